package printable

import (
	"testing"
	"unicode"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text, ünïcode", "plain text, ünïcode"},
		{"red \x1b[31mALERT\x1b[0m done", "red ALERT done"},
		{"title \x1b]0;pwned\x07 after", "title  after"},
		{"title \x1b]2;pwned\x1b\\ after", "title  after"},
		{"clear \x1b[2J\x1b[H screen", "clear  screen"},
		{"bell \x07 and back\bspace", "bell \ufffd and back\ufffdspace"},
		{"two\nlines\r\n", "two\ufffdlines\ufffd\ufffd"},
		{"bad \xff byte", "bad \ufffd byte"},
		{"csi \u009b31m c1", "csi  c1"},
		{"tab\tkept", "tab\tkept"},
		{"ends in ESC \x1b", "ends in ESC "},
	} {
		if got := String(c.in, false); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := String("a\nb\x1b[1m", true); got != "a\nb" {
		t.Errorf("with new lines kept: %q", got)
	}
}

func FuzzString(f *testing.F) {
	f.Add("\x1b]0;x\x07\x1b[31m\x9b1m\xff")
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range String(s, true) {
			if unicode.IsControl(r) && r != '\n' && r != '\t' {
				t.Fatalf("String(%q) keeps control %U", s, r)
			}
		}
	})
}
