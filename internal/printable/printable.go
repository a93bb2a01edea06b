// Package printable makes text that came from a host (a failure report, a
// console log, a name) safe to show on an operator's terminal: escape
// sequences and other control characters could otherwise move the
// cursor, rewrite what is shown, set the window title or worse.
package printable

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// String is s with every escape sequence removed and every other control
// character (C0 but tab, DEL, C1) and invalid byte shown as U+FFFD; a new
// line is kept only with keepNewlines.
func String(s string, keepNewlines bool) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (unicode.IsControl(r) && r != '\t' && (r != '\n' || !keepNewlines)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b || r == 0x9b: // ESC, CSI: the sequence goes whole
			i += n + sequence(s[i+n:], r == 0x9b)
			continue
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		case r == '\t', r == '\n' && keepNewlines:
			b.WriteRune(r)
		case unicode.IsControl(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// sequence is the length of the rest of an escape sequence at the start
// of s (after ESC, or after a CSI when csi): a CSI's parameters up to its
// final byte, an OSC or other string up to BEL or ST, else one character.
func sequence(s string, csi bool) int {
	if !csi {
		if s == "" {
			return 0
		}
		switch s[0] {
		case '[':
			return 1 + sequence(s[1:], true)
		case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: to BEL or ST
			for i := 1; i < len(s); i++ {
				if s[i] == 0x07 {
					return i + 1
				}
				if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
					return i + 2
				}
			}
			return len(s)
		}
		return 1
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x40 && s[i] <= 0x7e {
			return i + 1
		}
	}
	return len(s)
}
