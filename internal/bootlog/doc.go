// Package bootlog defines the phone-home callback: the token a host proves
// itself with, the line nginx writes for each callback, and a follower that
// reads the boot log across rotations and nginx restarts without losing or
// repeating a line.
//
// # Caveats
//
// The follower polls (every 100 ms by default) rather than using inotify:
// measurements with real nginx showed inotify-based tail libraries losing the
// lines written between a rename and nginx reopening its log.
package bootlog
