package monitor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"booted/internal/config"
)

// Locked wraps an Env whose environment a reload swaps (SIGHUP): each call
// of the daemon (its loop and its action run concurrently) holds a read
// lock, and Swap takes the write lock, so a reload is applied between
// calls, never in the middle of one.
type Locked struct {
	mu sync.RWMutex
	e  Env
}

var _ Env = (*Locked)(nil)

// NewLocked wraps e.
func NewLocked(e Env) *Locked { return &Locked{e: e} }

// Swap runs fn (which changes the environment e reads) with no call in
// progress.
func (l *Locked) Swap(fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fn()
}

func (l *Locked) Policy() (config.Monitor, int, int, []string) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Policy()
}

func (l *Locked) Measure(ctx context.Context, d time.Duration) (Measure, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Measure(ctx, d)
}

func (l *Locked) Workers(ctx context.Context) ([]Worker, map[string]bool, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Workers(ctx)
}

func (l *Locked) Do(ctx context.Context, a Action) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Do(ctx, a)
}

func (l *Locked) Load(ctx context.Context) (Saved, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Load(ctx)
}

func (l *Locked) Save(ctx context.Context, sv Saved) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Save(ctx, sv)
}

func (l *Locked) Event(ctx context.Context, kind, host, detail string) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Event(ctx, kind, host, detail)
}

func (l *Locked) Overview(ctx context.Context) (Overview, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.e.Overview(ctx)
}

// RunWithSignals runs d until SIGINT or SIGTERM (or ctx ends). On SIGHUP
// it calls reload (which changes the environment d.Env reads) with no call
// of the daemon in progress, then makes the daemon read its policy again;
// a reload that fails is told to errw and changes nothing.
func RunWithSignals(ctx context.Context, d *Daemon, reload func(ctx context.Context) error, errw io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }() // ends the reload goroutine
	locked := NewLocked(d.Env)
	reloaded := make(chan struct{}, 1)
	go func() {
		for range hup {
			if err := locked.Swap(func() error { return reload(ctx) }); err != nil {
				fmt.Fprintf(errw, "SIGHUP: %v (keeping the old policy)\n", err)
				continue
			}
			select {
			case reloaded <- struct{}{}:
			default:
			}
		}
	}()
	d.Env, d.Reload = locked, reloaded
	return d.Run(ctx)
}
