package targets

import (
	"context"
	"net/netip"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/conductord"
	"booted/internal/controller"
	"booted/internal/discovery"
)

// The hosts of a site with a network of its own phone home to their
// site (conductord.Relay); the controller records the callbacks its
// conductors relay as it records its own boot log's.

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

// serveCallbacks relays site's callbacks (conductord.Relay), when its
// hosts phone home to it. Run by a conductor of site.
func (s *session) serveCallbacks(ctx context.Context, js jetstream.JetStream, site string, logf func(string, ...any)) error {
	gw, ok := s.siteGateway(site)
	if !ok {
		return nil
	}
	r := &conductord.Relay{Env: s.env, Site: site, Nginx: s.siteController(site, gw), JS: js, Logf: logf,
		Addrs: func(ctx context.Context) map[string]string {
			out := map[string]string{}
			if insts, err := s.provs.List(ctx); err == nil {
				for _, in := range insts {
					out[in.Name] = in.Addr
				}
			}
			return out
		}}
	return r.Serve(ctx)
}
