package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Write never opens its temporary file through what is there already: a
// link where the old ".tmp" name was (a host's trap) is left alone, and the
// file behind it unchanged.
func TestWrite_NoTrapAtTheTemporaryName(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(secret, []byte("root:x"), 0o600)
	path := filepath.Join(dir, "authorized_keys")
	os.Symlink(secret, path+".tmp")
	if err := Write(path, []byte("ssh-ed25519 AAAA"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root:x" {
		t.Errorf("the file behind the link was written: %q", b)
	}
	if b, _ := os.ReadFile(path); string(b) != "ssh-ed25519 AAAA" {
		t.Errorf("written: %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

// WriteIn stays in its tree and follows no link: a directory a
// host replaced with a link (to the controller's /etc, say) or a ".." is
// refused and nothing is written out of the tree; missing directories are
// made; a file is replaced whole.
func TestWriteIn_StaysInTheTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := WriteIn(root, "root/.ssh/authorized_keys", []byte("k1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteIn(root, "root/.ssh/authorized_keys", []byte("k2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "root/.ssh/authorized_keys")); string(b) != "k2" {
		t.Errorf("read back %q", b)
	}
	// the host makes .ssh a link out of its tree
	os.RemoveAll(filepath.Join(root, "root/.ssh"))
	os.Symlink(outside, filepath.Join(root, "root/.ssh"))
	if err := WriteIn(root, "root/.ssh/authorized_keys", []byte("k3"), 0o600); err == nil {
		t.Error("WriteIn went through a link")
	}
	os.WriteFile(filepath.Join(outside, "f"), []byte("secret"), 0o600)
	for _, rel := range []string{"../escape", "/tmp/x", "root/../../escape"} {
		if err := WriteIn(root, rel, []byte("x"), 0o600); err == nil {
			t.Errorf("WriteIn %q: no error", rel)
		}
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("written out of the tree: %s", strings.Join(names, ", "))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file beside the tree: %v", err)
	}
}
