package files

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tail reads the end of a file, at most n bytes, and never through a
// link: a console log a host replaced with a link to a secret reads as an
// error, not as the secret.
func TestTail(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "console.log")
	body := append(bytes.Repeat([]byte("x"), 200<<10), []byte("END\n")...)
	os.WriteFile(log, body, 0o600)
	got, err := Tail(log, 64<<10)
	if err != nil || len(got) != 64<<10 || !bytes.HasSuffix(got, []byte("END\n")) {
		t.Fatalf("tail: %d bytes, %v", len(got), err)
	}
	if _, err := Tail(filepath.Join(dir, "none"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing file: %v, want fs.ErrNotExist", err)
	}
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("-----BEGIN OPENSSH PRIVATE KEY-----"), 0o600)
	os.Remove(log)
	os.Symlink(secret, log)
	got, err = Tail(log, 64<<10)
	if err == nil || strings.Contains(string(got), "PRIVATE") {
		t.Fatalf("a link to a secret: %q %v, want an error", got, err)
	}
	if got, err := Tail(dir, 10); err == nil {
		t.Fatalf("a directory: %q, want an error", got)
	}
}
