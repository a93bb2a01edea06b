package bootlog

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A write to the log, a rotation and a new live log each wake a waiting
// reader (inotify), rather than the interval ending: the wait's interval
// here is an hour, and only the events can end it before the test's
// deadline. A write to another file of the directory does not.
func TestWatcher_WakesOnLogChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "booted.log")
	os.WriteFile(path, nil, 0o644)
	w := Watch(path)
	defer w.Close()
	wait := func(what string, change func()) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- w.Wait(ctx, time.Hour) }()
		time.Sleep(50 * time.Millisecond)
		change()
		if err := <-done; err != nil {
			t.Errorf("%s did not wake the reader: %v", what, err)
		}
	}
	wait("a line appended", func() {
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("line\n")
		f.Close()
	})
	wait("a rotation", func() { os.Rename(path, path+".20261126T000000") })
	wait("a new live log", func() { os.WriteFile(path, []byte("x\n"), 0o644) })

	quiet := Watch(path) // a watcher with no events queued yet
	defer quiet.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	os.WriteFile(filepath.Join(dir, "other.log"), []byte("x\n"), 0o644)
	if err := quiet.Wait(ctx, time.Hour); err == nil {
		t.Error("a write to another file woke the reader")
	}
}
