// Package shell quotes words for a POSIX shell: every script booted writes
// or sends to a host goes through Quote.
package shell

import "strings"

// Quote returns s single-quoted for a POSIX shell.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
