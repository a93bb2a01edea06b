// Package envlock serialises the operations that change an environment's
// hosts: an flock on inventory/ENV/lock, held by the operation's process
// for as long as it runs (the kernel lets go when the process dies, so a
// killed operation never leaves it taken), with a line in the file saying
// who holds it. Reading operations (listings, status, checks) do not take it.
package envlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// ErrBusy is returned (wrapped, with who holds the lock) when another
// operation held the lock for longer than the wait.
var ErrBusy = errors.New("another operation holds the environment")

// Lock is a held environment lock.
type Lock struct {
	f    *os.File
	also []func()
}

// Also makes Release call release too, first (a lock taken with this one
// elsewhere: the inventory's, when other machines share it).
func (l *Lock) Also(release func()) { l.also = append(l.also, release) }

// Acquire takes the lock at path for what ("service:deploy local hello
// v2"), waiting up to wait for another operation to finish; waiting, if
// set, is told once who holds it.
func Acquire(ctx context.Context, path, what string, wait time.Duration, waiting func(holder string)) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("environment lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("environment lock %s: %w", path, err)
		}
		holder := Holder(path)
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: %s (waited %v; BOOTED_LOCK_WAIT waits longer)", ErrBusy, holder, wait)
		}
		if !told && waiting != nil {
			waiting(holder)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	line := fmt.Sprintf("pid %d since %s: %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339), what)
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(line), 0)
	}
	return &Lock{f: f}, nil
}

// Holder says who holds the lock at path, as its holder wrote it.
func Holder(path string) string {
	b, err := os.ReadFile(path)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return "an operation that has not said what it is"
}

// Release lets the lock go.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	for _, r := range l.also {
		r()
	}
	l.also = nil
	l.f.Truncate(0)
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
