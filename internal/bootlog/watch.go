package bootlog

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher wakes a reader of the boot log when the log (or a rotated copy)
// is written, created or renamed (inotify, through fsnotify, on the log's
// directory), so a callback is read within milliseconds instead of at the
// next poll. Where inotify is not to be had it waits out the interval.
type Watcher struct {
	base string
	w    *fsnotify.Watcher // nil: no inotify, timed waits only
}

// Watch watches the log at path.
func Watch(path string) *Watcher {
	x := &Watcher{base: filepath.Base(path)}
	if w, err := fsnotify.NewWatcher(); err == nil {
		if err := w.Add(filepath.Dir(path)); err == nil {
			x.w = w
		} else {
			w.Close()
		}
	}
	return x
}

// Wait returns when the log changes, after max at most (the backstop that
// keeps a missed event from stalling a reader), or with ctx's error.
func (x *Watcher) Wait(ctx context.Context, max time.Duration) error {
	t := time.NewTimer(max)
	defer t.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if x.w != nil {
		events, errs = x.w.Events, x.w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if strings.HasPrefix(filepath.Base(e.Name), x.base) { // the log or one of its rotated copies
				return nil
			}
		case <-errs: // an overflow: the log may have changed
			return nil
		}
	}
}

// Close stops watching.
func (x *Watcher) Close() {
	if x.w != nil {
		x.w.Close()
	}
}
