// Package conductord is a site's conductor (conductor:run): it enters its
// site's network, takes its site's jobs from NATS (Run, over a Site port
// the session fills) and relays its site's callbacks. The hosts of a site with a network
// of its own phone home to their site: an nginx on the site's gateway
// address (its router, where its conductors run), started by the first of
// its conductors. One conductor at a time (the holder of a lock on the
// site's machine) follows that boot log and publishes to NATS each
// callback it verified (a host of its site, from the address the site
// gave it); the controller records them as it records its own boot log's
// (the token, the signature, the pins: the same checks), each once.
package conductord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/atomicfile"
	"booted/internal/bootlog"
	"booted/internal/bridge"
	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/controller"
)

// Relay relays one site's callbacks.
type Relay struct {
	Env  *config.Env
	Site string
	// Nginx is the site's callback nginx (its boot log beside its files).
	Nginx *controller.Controller
	JS    jetstream.JetStream
	// Addrs are the addresses the site's provider gave its hosts, by name.
	Addrs func(ctx context.Context) map[string]string
	Logf  func(format string, a ...any)
}

// NginxCheck is how often the following conductor checks its site's
// nginx runs (and starts it again if not).
const NginxCheck = 2 * time.Second

// Serve makes sure the site's callback nginx runs, then, while it holds
// the site's callbacks lock, follows its boot log and publishes the
// callbacks it verified, until ctx ends (in the background).
func (r *Relay) Serve(ctx context.Context) error {
	c := r.Nginx
	dir := filepath.Dir(c.BootLog)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := ensureNginx(ctx, c); err != nil {
		return fmt.Errorf("site %s's callbacks: %w", r.Site, err)
	}
	r.Logf("site %s's hosts phone home to %s", r.Site, c.Listen)
	go func() {
		for ctx.Err() == nil {
			// Only a conductor NATS takes from follows (one without
			// credentials the servers know would hold the log up).
			if _, err := r.JS.Stream(ctx, conductor.CallbacksStream); err != nil {
				sleepCtx(ctx, time.Second)
				continue
			}
			unlock, err := lockCtx(ctx, filepath.Join(dir, "follow.lock"))
			if err != nil {
				return
			}
			r.Logf("following site %s's boot log %s", r.Site, c.BootLog)
			fctx, stop := context.WithCancel(ctx)
			go r.keepServing(fctx) // the follower keeps the site's nginx up
			err = r.follow(fctx)
			stop()
			unlock() // (another conductor of the site may do better)
			if err != nil && ctx.Err() == nil {
				r.Logf("site %s's boot log: %v (let go; again in a second)", r.Site, err)
				sleepCtx(ctx, time.Second)
			}
		}
	}()
	return nil
}

// keepServing starts the site's nginx again whenever it is found
// stopped, until ctx ends.
func (r *Relay) keepServing(ctx context.Context) {
	for {
		sleepCtx(ctx, NginxCheck)
		if ctx.Err() != nil {
			return
		}
		if r.Nginx.PID() == 0 {
			if err := ensureNginx(ctx, r.Nginx); err != nil {
				r.Logf("site %s's nginx: %v", r.Site, err)
			} else {
				r.Logf("site %s's nginx was not running: started again", r.Site)
			}
		}
	}
}

// ensureNginx starts c unless it runs, one conductor of the site at a
// time.
func ensureNginx(ctx context.Context, c *controller.Controller) error {
	unlock, err := bridge.LockFile(filepath.Join(filepath.Dir(c.BootLog), "nginx.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	return c.Ensure(ctx)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// lockCtx takes the flock at path, giving up when ctx ends.
func lockCtx(ctx context.Context, path string) (func(), error) {
	got := make(chan func(), 1)
	go func() {
		unlock, err := bridge.LockFile(path)
		if err != nil {
			close(got)
			return
		}
		if ctx.Err() != nil {
			unlock()
			close(got)
			return
		}
		got <- unlock
	}()
	select {
	case unlock, ok := <-got:
		if !ok {
			return nil, fmt.Errorf("lock %s: not taken", path)
		}
		return unlock, nil
	case <-ctx.Done():
		return nil, ctx.Err() // (the goroutine lets go of the lock if it gets it)
	}
}

// follow follows the site's boot log from the position kept next to it,
// publishing each verified callback (named by its place in the log), and
// keeps the position after each batch.
func (r *Relay) follow(ctx context.Context) error {
	log := r.Nginx.BootLog
	posFile := log + ".published"
	var pos bootlog.Position
	if b, err := os.ReadFile(posFile); err == nil {
		json.Unmarshal(b, &pos)
	}
	f := &bootlog.Follower{Path: log, Poll: 250 * time.Millisecond, Logf: r.Logf}
	_, err := f.Follow(ctx, pos, false, func(lines [][]byte, next bootlog.Position) error {
		addrs := r.Addrs(ctx)
		off := next.Offset // each line's place: from the batch's end back
		for _, l := range lines {
			off -= int64(len(l)) + 1
		}
		for _, l := range lines {
			id := strconv.FormatUint(next.Inode, 10) + "." + strconv.FormatInt(off, 10)
			off += int64(len(l)) + 1
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			if why := r.Verify(l, addrs); why != "" {
				r.Logf("site %s: callback not passed on: %s", r.Site, why)
				continue
			}
			if err := conductor.PublishCallback(ctx, r.JS, r.Env.Name, r.Site, id, l); err != nil {
				return err
			}
		}
		b, _ := json.Marshal(next)
		return atomicfile.Write(posFile, b, 0o600)
	})
	return err
}

// Verify says why a line of the site's boot log is not passed on ("": it
// is): not a callback, a host of another site, or not from the address
// the site gave the host it names (addrs). The controller checks the
// rest: the token, the signature, the pinned key.
func (r *Relay) Verify(line []byte, addrs map[string]string) string {
	cb, err := bootlog.ParseLine(line)
	if err != nil {
		return err.Error()
	}
	role, _ := r.Env.RoleOf(cb.Name)
	switch {
	case r.Env.SiteOf(cb.Name, role) != r.Site:
		return fmt.Sprintf("callback for %s from %s: not a host of site %s", cb.Name, cb.Remote, r.Site)
	case addrs[cb.Name] != cb.Remote.String():
		return fmt.Sprintf("callback for %s from %s: not its address (%s)", cb.Name, cb.Remote, addrs[cb.Name])
	}
	return ""
}
