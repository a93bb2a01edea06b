package conductord

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/bridge"
	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/outcome"
)

// Site is what a conductor needs of its environment (the session fills
// it, opened as site's conductor).
type Site interface {
	Config() *config.Env
	// Connect connects to the env file's NATS cluster as site's conductor
	// called name (waiting for it to come up).
	Connect(name, site string) (*nats.Conn, jetstream.JetStream, error)
	// Do does one job on its host and says how it ended (it writes no
	// inventory: the controller does, from the result).
	Do(ctx context.Context, js jetstream.JetStream, j conductor.Job) conductor.Result
	// PrepareNetworks brings up the site's bare-metal networks (dnsmasq,
	// the files its nginx serves); nil when it has none.
	PrepareNetworks(ctx context.Context) error
	// ServeCallbacks relays the callbacks of the site's hosts (Relay).
	ServeCallbacks(ctx context.Context, js jetstream.JetStream, site string, logf func(string, ...any)) error
}

// Run is conductor:run: it takes the jobs of site from NATS until ctx
// ends (Ctrl-C, SIGTERM), at most parallel at once, doing each with the
// functions the controller uses in-process, over its own SSH connections
// to the site's hosts, and relays the site's callbacks.
func Run(ctx context.Context, s Site, site string, parallel int, out, errw io.Writer) error {
	env := s.Config()
	if _, ok := env.Sites[site]; !ok {
		var names []string
		for n := range env.Sites {
			names = append(names, n)
		}
		return outcome.Refuse("conductor:run: %s has no site %q (its sites: %s)", env.Path, site, strings.Join(slices.Sorted(slices.Values(names)), ", "))
	}
	host, _ := os.Hostname()
	name := fmt.Sprintf("%s-%d", host, os.Getpid())
	nc, js, err := s.Connect("booted conductor "+name, site)
	if err != nil {
		return err
	}
	defer nc.Close()
	logf := func(f string, a ...any) { fmt.Fprintf(errw, "conductor %s: "+f+"\n", append([]any{name}, a...)...) }
	c := &conductor.Conductor{JS: js, Env: env.Name, Site: site, Name: name, Parallel: parallel, AckWait: env.NATS.AckWait.D(), // 0: the defaults, fanout.DefaultParallel and 10s
		Log: logf,
		Do:  func(ctx context.Context, j conductor.Job) conductor.Result { return s.Do(ctx, js, j) }}
	fmt.Fprintf(out, "conductor %s: site %s of %s, NATS %s\n", name, site, env.Name, strings.Join(env.NATS.URLs, ","))
	if err := s.PrepareNetworks(ctx); err != nil {
		return fmt.Errorf("site %s's networks: %w", site, err)
	}
	if err := s.ServeCallbacks(ctx, js, site, logf); err != nil {
		return err
	}
	return c.Run(ctx)
}

// siteNetnsEnv marks a conductor that entered its site's network.
const siteNetnsEnv = "BOOTED_SITE_NETNS"

// EnterSite runs this conductor again inside its site's network, when the
// site has one of its own on this machine (a namespace: the site's
// machine) and it was started outside it: there it reaches its site's
// hosts and makes them, and takes their callbacks on the site's address.
// (The process stays the same: nsenter, then this program, in its place.)
func EnterSite(env *config.Env, site string, errw io.Writer) error {
	st := env.Sites[site]
	if st == nil || st.Subnet == "" || len(env.NATS.URLs) == 0 {
		return nil // no network of its own
	}
	ns := bridge.SiteNetns(env.Name, site)
	if os.Getenv(siteNetnsEnv) == ns || bridge.InNetns(ns) {
		return nil // there already
	}
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		return fmt.Errorf("conductor:run: site %s's network (namespace %s) is not made on this machine: start the environment from its controller first (env:startAll %s)", site, ns, env.Name)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("conductor:run: entering site %s's network: %w (util-linux)", site, err)
	}
	fmt.Fprintf(errw, "conductor: site %s's network is namespace %s: running there\n", site, ns)
	args := append([]string{"nsenter", "--net=/run/netns/" + ns, "--", exe}, os.Args[1:]...)
	return syscall.Exec(nsenter, args, append(os.Environ(), siteNetnsEnv+"="+ns))
}
