package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prune removes only images that are idle and that no existing VM disk is
// an overlay of; it keeps the new one, busy ones, recent ones and ones
// whose users were never recorded.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * pruneIdle)
	liveDisk := filepath.Join(t.TempDir(), "disk.qcow2")
	os.WriteFile(liveDisk, nil, 0o600)
	image := func(name string, lastUsed time.Time, users ...string) string {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "done"), nil, 0o644)
		os.Chtimes(filepath.Join(d, "done"), lastUsed, lastUsed)
		if users != nil {
			img := Image{Dir: d}
			os.MkdirAll(filepath.Join(d, "users"), 0o755)
			for _, u := range users {
				if err := img.addUser(u); err != nil {
					t.Fatal(err)
				}
			}
		}
		return d
	}
	keep := image("debian-new", old, []string{}...)
	gone := image("debian-gone", old, filepath.Join(dir, "deleted-vm", "disk.qcow2"))
	os.WriteFile(gone+".lock", nil, 0o600)
	busy := image("debian-busy", old, liveDisk)
	recent := image("debian-recent", time.Now(), []string{}...)
	legacy := image("debian-legacy", old)
	building := filepath.Join(dir, "debian-x.build")
	os.MkdirAll(building, 0o755)

	var log bytes.Buffer
	prune(dir, keep, &log)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for _, d := range []string{keep, busy, recent, legacy, building} {
		if !exists(d) {
			t.Errorf("prune removed %s", filepath.Base(d))
		}
	}
	if exists(gone) || exists(gone+".lock") {
		t.Errorf("prune kept %s, whose only VM is gone", filepath.Base(gone))
	}
	// A new VM on the kept image drops the records of VMs that are gone,
	// not those of disks being made (DISK.tmp) by a parallel build.
	img := Image{Dir: keep}
	making := filepath.Join(t.TempDir(), "disk.qcow2")
	os.WriteFile(making+".tmp", nil, 0o600)
	img.addUser(filepath.Join(dir, "gone-vm", "disk.qcow2"))
	img.addUser(making)
	img.addUser(liveDisk)
	if live := users(keep); len(live) != 2 {
		t.Errorf("user records %v after a gone VM, one being made and a live one; want the last two", live)
	}
	if recs, _ := os.ReadDir(filepath.Join(keep, "users")); len(recs) != 2 {
		t.Errorf("%d user records left, want 2", len(recs))
	}
	for _, want := range []string{"removed the older debian-gone", "kept the older debian-busy: 1 VM disks", liveDisk, "debian-legacy: it predates"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, &log)
		}
	}
}
