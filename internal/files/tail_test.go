package files

import (
	"bytes"
	"errors"
	"fmt"
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

// Cap keeps a log another process appends to under its bound, in place:
// the newest half stays, the writer's later appends land after it, a file
// under the bound is untouched, and a link is never followed.
func TestCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "console.log")
	w, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 1000 {
		fmt.Fprintf(w, "line %04d\n", i) // 10 bytes a line
	}
	if cut, err := Cap(path, 20000); err != nil || cut != 0 {
		t.Fatalf("a 10,000-byte file capped at 20,000: cut %d, %v", cut, err)
	}
	cut, err := Cap(path, 4000)
	if err != nil || cut != 8000 {
		t.Fatalf("capped at 4,000: cut %d, %v, want 8000", cut, err)
	}
	fmt.Fprintf(w, "after\n")
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "[booted: 8000 bytes of this log cut; it keeps its last 2000]\nline 0800\n") || !strings.HasSuffix(string(b), "line 0999\nafter\n") || len(b) > 2100 {
		t.Errorf("after the cap (%d bytes):\n%.120s…%s", len(b), b, b[max(0, len(b)-30):])
	}
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(strings.Repeat("s", 10000)), 0o600)
	link := filepath.Join(dir, "link.log")
	os.Symlink(secret, link)
	if _, err := Cap(link, 100); err == nil {
		t.Error("Cap followed a link")
	}
	if st, _ := os.Stat(secret); st.Size() != 10000 {
		t.Errorf("the file behind the link is %d bytes now", st.Size())
	}
}
