package session

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

// SiteGateway is site's gateway, if its hosts are made by its conductors
// and phone home to it (config.Env.SiteGateway).
func (s *Session) SiteGateway(site string) (netip.Addr, bool) { return s.Env.SiteGateway(site) }

// SiteOfHost is host name's site ("": none).
func (s *Session) SiteOfHost(name string) string {
	role, _ := s.Env.RoleOf(name)
	return s.Env.SiteOf(name, role)
}

// CallbackURL is where host name phones home: its site's nginx, or the
// controller's.
func (s *Session) CallbackURL(name string) string {
	if u, ok := s.Env.SiteURL(s.SiteOfHost(name)); ok {
		return u + "/booted/"
	}
	return s.Env.CallbackURL()
}

// SitesCallBack reports whether any site's hosts phone home to the site.
func (s *Session) SitesCallBack() bool {
	for site := range s.Env.Sites {
		if _, ok := s.SiteGateway(site); ok {
			return true
		}
	}
	return false
}

// SiteController is site's callback nginx (its files under
// inventory/ENV/sites/SITE).
func (s *Session) SiteController(site string, gw netip.Addr) *controller.Controller {
	dir := filepath.Join(s.Dir, "sites", site)
	return &controller.Controller{
		Env: s.Env.Name + " (site " + site + ")", Listen: netip.AddrPortFrom(gw, uint16(s.Env.Callback.Port)).String(),
		Dir: filepath.Join(dir, "nginx"), BootLog: filepath.Join(dir, "booted.log"), KickstartDir: filepath.Join(dir, "kickstart"),
		Template: filepath.Join(s.Root, "nginx", "controller.conf.tmpl"),
	}
}

// SitedCallbacks is the discoverer's source of the sites' callbacks.
func (s *Session) SitedCallbacks(ctx context.Context, after uint64) ([]discovery.SitedLine, error) {
	js, err := s.ControllerNATS(ctx)
	if err != nil {
		return nil, err
	}
	cbs, err := conductor.Callbacks(ctx, js, s.Env.Name, after, 256)
	out := make([]discovery.SitedLine, len(cbs))
	for i, c := range cbs {
		out[i] = discovery.SitedLine{Seq: c.Seq, Site: c.Site, Line: c.Line}
	}
	return out, err
}

// ServeCallbacks relays site's callbacks (conductord.Relay), when its
// hosts phone home to it. Run by a conductor of site.
func (s *Session) ServeCallbacks(ctx context.Context, js jetstream.JetStream, site string, logf func(string, ...any)) error {
	gw, ok := s.SiteGateway(site)
	if !ok {
		return nil
	}
	r := &conductord.Relay{Env: s.Env, Site: site, Nginx: s.SiteController(site, gw), JS: js, Logf: logf,
		Addrs: func(ctx context.Context) map[string]string {
			out := map[string]string{}
			if insts, err := s.Provs.List(ctx); err == nil {
				for _, in := range insts {
					out[in.Name] = in.Addr
				}
			}
			return out
		}}
	return r.Serve(ctx)
}
