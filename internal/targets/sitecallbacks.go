package targets

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/atomicfile"
	"booted/internal/bootlog"
	"booted/internal/bridge"
	"booted/internal/conductor"
	"booted/internal/controller"
	"booted/internal/discovery"
)

// The hosts of a site with a network of its own phone home to their site:
// an nginx on the site's gateway address (its router, where its conductors
// run), started by the first of its conductors. One conductor at a time
// (the holder of a lock on the site's machine) follows that boot log and
// publishes to NATS each callback it verified (a host of its site, from
// the address the site gave it); the controller records them as it
// records its own boot log's (the token, the signature, the pins: the
// same checks), each once.

// siteGateway is site's gateway, if its hosts are made by its conductors
// and phone home to it (config.Env.SiteGateway).
func (s *session) siteGateway(site string) (netip.Addr, bool) { return s.env.SiteGateway(site) }

// siteOfHost is host name's site ("": none).
func (s *session) siteOfHost(name string) string {
	role, _ := s.env.RoleOf(name)
	return s.env.SiteOf(name, role)
}

// callbackURL is where host name phones home: its site's nginx, or the
// controller's.
func (s *session) callbackURL(name string) string {
	if u, ok := s.env.SiteURL(s.siteOfHost(name)); ok {
		return u + "/booted/"
	}
	return s.env.CallbackURL()
}

// sitesCallBack reports whether any site's hosts phone home to the site.
func (s *session) sitesCallBack() bool {
	for site := range s.env.Sites {
		if _, ok := s.siteGateway(site); ok {
			return true
		}
	}
	return false
}

// siteController is site's callback nginx (its files under
// inventory/ENV/sites/SITE).
func (s *session) siteController(site string, gw netip.Addr) *controller.Controller {
	dir := filepath.Join(s.dir, "sites", site)
	return &controller.Controller{
		Env: s.env.Name + " (site " + site + ")", Listen: netip.AddrPortFrom(gw, uint16(s.env.Callback.Port)).String(),
		Dir: filepath.Join(dir, "nginx"), BootLog: filepath.Join(dir, "booted.log"), KickstartDir: filepath.Join(dir, "kickstart"),
		Template: filepath.Join(s.r.Root, "nginx", "controller.conf.tmpl"),
	}
}

// sitedCallbacks is the discoverer's source of the sites' callbacks.
func (s *session) sitedCallbacks(ctx context.Context, after uint64) ([]discovery.SitedLine, error) {
	js, err := s.controllerNATS(ctx)
	if err != nil {
		return nil, err
	}
	cbs, err := conductor.Callbacks(ctx, js, s.env.Name, after, 256)
	out := make([]discovery.SitedLine, len(cbs))
	for i, c := range cbs {
		out[i] = discovery.SitedLine{Seq: c.Seq, Site: c.Site, Line: c.Line}
	}
	return out, err
}

// serveCallbacks makes sure site's callback nginx runs, then, while it
// holds the site's callbacks lock, follows its boot log and publishes the
// callbacks it verified, until ctx ends. Run by a conductor of site.
func (s *session) serveCallbacks(ctx context.Context, js jetstream.JetStream, site string, logf func(string, ...any)) error {
	gw, ok := s.siteGateway(site)
	if !ok {
		return nil
	}
	c := s.siteController(site, gw)
	dir := filepath.Dir(c.BootLog)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := ensureSiteNginx(ctx, c); err != nil {
		return fmt.Errorf("site %s's callbacks: %w", site, err)
	}
	logf("site %s's hosts phone home to %s", site, c.Listen)
	go func() {
		for ctx.Err() == nil {
			// Only a conductor NATS takes from follows (one without
			// credentials the servers know would hold the log up).
			if _, err := js.Stream(ctx, conductor.CallbacksStream); err != nil {
				sleepCtx(ctx, time.Second)
				continue
			}
			unlock, err := lockCtx(ctx, filepath.Join(dir, "follow.lock"))
			if err != nil {
				return
			}
			logf("following site %s's boot log %s", site, c.BootLog)
			fctx, stop := context.WithCancel(ctx)
			go keepServing(fctx, c, site, logf) // the follower keeps the site's nginx up
			err = s.followSite(fctx, js, site, c.BootLog, logf)
			stop()
			unlock() // (another conductor of the site may do better)
			if err != nil && ctx.Err() == nil {
				logf("site %s's boot log: %v (let go; again in a second)", site, err)
				sleepCtx(ctx, time.Second)
			}
		}
	}()
	return nil
}

// siteNginxCheck is how often the following conductor checks its site's
// nginx runs (and starts it again if not).
const siteNginxCheck = 2 * time.Second

// keepServing starts c again whenever it is found stopped, until ctx ends.
func keepServing(ctx context.Context, c *controller.Controller, site string, logf func(string, ...any)) {
	for {
		sleepCtx(ctx, siteNginxCheck)
		if ctx.Err() != nil {
			return
		}
		if c.PID() == 0 {
			if err := ensureSiteNginx(ctx, c); err != nil {
				logf("site %s's nginx: %v", site, err)
			} else {
				logf("site %s's nginx was not running: started again", site)
			}
		}
	}
}

// ensureSiteNginx starts c unless it runs, one conductor of the site at a
// time.
func ensureSiteNginx(ctx context.Context, c *controller.Controller) error {
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

// followSite follows site's boot log from the position kept next to it,
// publishing each verified callback (named by its place in the log), and
// keeps the position after each batch.
func (s *session) followSite(ctx context.Context, js jetstream.JetStream, site, log string, logf func(string, ...any)) error {
	posFile := log + ".published"
	var pos bootlog.Position
	if b, err := os.ReadFile(posFile); err == nil {
		json.Unmarshal(b, &pos)
	}
	f := &bootlog.Follower{Path: log, Poll: 250 * time.Millisecond, Logf: logf}
	_, err := f.Follow(ctx, pos, false, func(lines [][]byte, next bootlog.Position) error {
		addrs := s.siteAddrs(ctx)
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
			if why := s.verifyCallback(site, l, addrs); why != "" {
				logf("site %s: callback not passed on: %s", site, why)
				continue
			}
			if err := conductor.PublishCallback(ctx, js, s.env.Name, site, id, l); err != nil {
				return err
			}
		}
		b, _ := json.Marshal(next)
		return atomicfile.Write(posFile, b, 0o600)
	})
	return err
}

// siteAddrs are the addresses the site's provider gave its hosts.
func (s *session) siteAddrs(ctx context.Context) map[string]string {
	out := map[string]string{}
	if insts, err := s.provs.List(ctx); err == nil {
		for _, in := range insts {
			out[in.Name] = in.Addr
		}
	}
	return out
}

// verifyCallback says why a line of site's boot log is not passed on
// ("": it is): not a callback, a host of another site, or not from the
// address the site gave the host it names. (The controller checks the
// rest: the token, the signature, the pinned key.)
func (s *session) verifyCallback(site string, line []byte, addrs map[string]string) string {
	cb, err := bootlog.ParseLine(line)
	switch {
	case err != nil:
		return err.Error()
	case s.siteOfHost(cb.Name) != site:
		return fmt.Sprintf("callback for %s from %s: not a host of site %s", cb.Name, cb.Remote, site)
	case addrs[cb.Name] != cb.Remote.String():
		return fmt.Sprintf("callback for %s from %s: not its address (%s)", cb.Name, cb.Remote, addrs[cb.Name])
	}
	return ""
}
