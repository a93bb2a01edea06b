// Package targets is what each Mage target does. magefile.go only parses
// arguments and calls these functions, and the monitor daemon calls the same
// ones; they can be tested without Mage.
//
// Settings come from BOOTED_* environment variables, read once into a
// Runner (see FromEnviron and the Env* constants).
package targets
