package files

import (
	"os"
	"path/filepath"
	"testing"

	"booted/internal/testutil"
)

// A file is hashed once while its stamp stays: by this process, or, in
// another process, by the record kept of an earlier hash (what the
// inventory keeps between operations); a write, even of the same size
// with its time set back, is read again.
func TestHash_ReadOnlyWhenChanged(t *testing.T) {
	testutil.RequireRoot(t, "fanotify counts the opens")
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("one"), 0o644)
	opens := testutil.Opens(t, p)
	first, err := Hash(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Hash(p, nil); err != nil {
		t.Fatal(err)
	}
	if n := opens(); n != 1 {
		t.Errorf("two hashes in one process opened it %d times; want 1", n)
	}
	forget := func() { hashed.Lock(); clear(hashed.m); hashed.Unlock() } // another process
	forget()
	if l, err := Hash(p, &first); err != nil || l != first {
		t.Errorf("hash with a record of the same stamp: %+v %v; want %+v", l, err, first)
	}
	if n := opens(); n != 0 {
		t.Errorf("a hash with a record of the file's stamp opened it %d times; want 0", n)
	}
	st, _ := os.Stat(p)
	os.WriteFile(p, []byte("two"), 0o644)
	os.Chtimes(p, st.ModTime(), st.ModTime())
	opens() // (the test's own write)
	forget()
	l, err := Hash(p, &first)
	if err != nil || l.SHA256 == first.SHA256 {
		t.Errorf("hash after a write of the same size, time set back: %+v %v; want a new sum", l, err)
	}
	if n := opens(); n != 1 {
		t.Errorf("a changed file was opened %d times; want 1", n)
	}
}
