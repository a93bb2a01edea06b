package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"booted/internal/apiserver"
	"booted/internal/creds"
	"booted/internal/discovery"
	"booted/internal/ec2backend"
	"booted/internal/ec2host"
	"booted/internal/inventory"
	"booted/internal/metadata"
	"booted/internal/monitor"
	"booted/internal/provider/local"
	"booted/internal/provider/registry"
	"booted/internal/restapi"
	"booted/internal/restbackend"
	"booted/internal/tlsca"
)

// APIRegion is the region the rc files name (any region signs; booted
// checks the signature with the one the client used).
const APIRegion = "booted"

// launchTimeout bounds a launch the API started in the background.
const launchTimeout = 30 * time.Minute

// CredsCreate makes an access key for USER of ENV's EC2 API and writes the
// rc file, credentials and AWS CLI profile USER sources (the secret is in
// the credentials file alone, 0600, never printed).
func CredsCreate(ctx context.Context, o Options, envName, user string) error {
	if err := creds.CheckUser(user); err != nil {
		return err
	}
	return Change(ctx, o, envName, "creds:create "+envName+" "+user, func(s *Session) error {
		st := creds.Store{Dir: filepath.Join(s.Dir, "creds")}
		c, err := st.Create(user)
		if err != nil {
			return err
		}
		_, _, ca, err := s.apiTLS()
		if err != nil {
			return err
		}
		url := apiserver.URL(o.APIListen)
		rc, err := st.Files(s.Env.Name, c, url, APIRegion, ca)
		if err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "%s: access key %s for %s; `source %s` points the AWS CLI and boto3 at %s/; `curl -K %s %s/api/v1/instances` reaches the REST API\n",
			envName, c.AccessKey, user, rc, url, strings.TrimSuffix(rc, ".rc")+".curlrc", url)
		return nil
	})
}

// apiTLS returns the API's certificate, its key and the CA file its
// clients trust: the env file's api.tls, or those booted makes under
// inventory/ENV/api-tls (the CA once; the certificate again when
// BOOTED_API_LISTEN names an address it does not carry, valid a year).
func (s *Session) apiTLS() (cert, key, ca string, err error) {
	if t := s.Env.API.TLS; t.Cert != "" {
		return s.Env.ProjectPath(t.Cert), s.Env.ProjectPath(t.Key), s.Env.ProjectPath(t.CA), nil
	}
	f := tlsca.Files{Dir: filepath.Join(s.Dir, "api-tls")}
	if err := f.Ensure("booted API "+s.Env.Name, apiserver.Names(s.APIListen), 365*24*time.Hour); err != nil {
		return "", "", "", fmt.Errorf("the API's certificate in %s: %w", f.Dir, err)
	}
	return f.Cert(), f.Key(), f.CA(), nil
}

// ServeAPI serves the EC2 Query API of ENV on BOOTED_API_LISTEN until it
// is stopped (Ctrl-C): instances, key pairs, for the users of creds:create.
// The environment is opened once, when it starts (its env file, the
// inventory, its providers), and every request is served on that session;
// a change holds the environment's lock, as a target's does.
func ServeAPI(ctx context.Context, o Options, envName string) error {
	return View(ctx, o, envName, func(s *Session) error { return s.serveAPI(ctx) })
}

func (s *Session) serveAPI(ctx context.Context) error {
	envName := s.Env.Name
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	admin := func(user string) bool { return slices.Contains(s.Env.API.Admins, user) }
	b := &ec2backend.Backend{Envs: s.EC2Envs()}
	b.Launch = func(ids []string) { // pending at once, as EC2 answers; booted in the background
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cc := context.WithTimeout(lctx, launchTimeout)
			defer cc()
			if err := s.LaunchInstances(c, ids); err != nil {
				fmt.Fprintf(s.Err, "%s: %v\n", envName, err)
			}
		}()
	}
	cert, key, _, err := s.apiTLS()
	if err != nil {
		return err
	}
	tlsConf, err := apiserver.TLSConfig(cert, key)
	if err != nil {
		return fmt.Errorf("api:serve %s: %w (api.tls in %s names them; leave it out for a certificate booted makes)", envName, err, s.Env.Path)
	}
	ln, err := net.Listen("tcp", s.APIListen)
	if err != nil {
		return fmt.Errorf("api:serve %s: %w (BOOTED_API_LISTEN chooses another address)", envName, err)
	}
	// Launches an earlier api:serve left unfinished (it was killed) go on:
	// no instance stays pending for ever.
	pending, err := s.pendingInstances(ctx)
	if err != nil {
		ln.Close()
		return err
	}
	if len(pending) > 0 {
		fmt.Fprintf(s.Out, "%s: resuming the launch of %s (left pending by an earlier api:serve)\n", envName, strings.Join(pending, ", "))
		b.Launch(pending)
	}
	logf := func(f string, a ...any) { fmt.Fprintf(s.Err, "api: "+f+"\n", a...) }
	rest := &restbackend.Backend{Envs: s.RESTEnvs(), Do: func(ctx context.Context, what, name, arg string) (string, error) {
		return restChange(ctx, s.Options, envName, what, name, arg)
	}}
	srv := &apiserver.Server{EC2: b, REST: rest, Secrets: ec2backend.Secrets{Store: creds.Store{Dir: filepath.Join(s.Dir, "creds")}},
		Status: s.statusPage(), Admin: admin, Log: logf, TLS: tlsConf}
	wg.Add(1)
	go func() { defer wg.Done(); s.capConsoles(lctx) }()
	url := apiserver.URL(ln.Addr().String())
	fmt.Fprintf(s.Out, "%s: EC2 API on %s/, REST API on %s/api/v1/ (described at /openapi.json), status page at /status; HTTPS with the certificate %s (creds:create %s USER makes a user and hands them the CA; api.admins in the env file may use the inventory)\n", envName, url, url, cert, envName)
	err = srv.Serve(ctx, ln)
	cancel() // launches in flight stop; their instances end failed or terminated
	wg.Wait()
	return err
}

// restChange does a change of the REST API as its target does, and
// returns what it printed.
func restChange(ctx context.Context, o Options, envName, what, name, arg string) (string, error) {
	do, ok := restChanges[what]
	if !ok {
		return "", restapi.Errorf("InvalidRequest", "no change %q", what)
	}
	var buf bytes.Buffer
	q := o
	q.Out, q.JSON = &buf, false
	err := do(ctx, q, envName, name, arg)
	return buf.String(), err
}

// statusPage serves the status page (the monitor's) from what the monitor
// kept, each host linking to its JSON in the REST API: all of it to an
// administrator (api.admins), and to any other user their own instances
// and their events alone.
func (s *Session) statusPage() apiserver.StatusPage {
	// what it shows of the hosts is looked at once per 5 s at most, not
	// once per request (each look logs in to the hosts)
	hosts := &monitor.OverviewCache{Get: func(ctx context.Context) (monitor.Overview, error) { return NewMonitorEnv(s).Overview(ctx) }}
	return func(w http.ResponseWriter, req *http.Request, user string, admin bool) {
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		var in monitor.PageInput
		err := func() error {
			m := NewMonitorEnv(s)
			ov, err := hosts.Overview(ctx)
			if err != nil {
				return err
			}
			in = monitor.PageInput{Env: s.Env.Name}
			if !admin { // (the hosts' JSON is the administrators')
				own, err := s.ownInstances(ctx, user)
				if err != nil {
					return err
				}
				in.Overview = ov.Only(own)
				in.Notices = append(in.Notices, fmt.Sprintf("%s: your instances and their events; the service's figures and the other hosts are for the administrators (api.admins).", user))
				return nil
			}
			if in.Saved, err = m.Load(ctx); err != nil {
				return err
			}
			p, _, _, _ := m.Policy()
			in.SLAP95, in.SLAErr, in.Overview = p.SLA.P95.D(), p.SLA.ErrorRate, ov
			in.HostLink = func(h string) string { return "/api/v1/hosts/" + url.PathEscape(h) }
			if img, _ := registry.Image("local"); s.Env.Provider.Type == "local" {
				in.Notices = append(in.Notices, fmt.Sprintf("Instances of %s are local hosts (image %s): each in namespaces and a root of its own on this controller, its root an unprivileged id here, bounded to %d MiB, %d processes and %d CPU.",
					s.Env.Name, img, local.MemoryLimit>>20, local.PidsLimit, local.CPUs))
			}
			return nil
		}()
		if err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		monitor.RenderPage(w, in)
	}
}

// ownInstances are the names of user's instances.
func (s *Session) ownInstances(ctx context.Context, user string) (map[string]bool, error) {
	hs, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, h := range hs {
		if ec2host.Of(h, user) {
			own[h.Name] = true
		}
	}
	return own, nil
}

// pendingInstances are the env's instances whose launch has not ended
// (requested, provisioning, booting, booted).
func (s *Session) pendingInstances(ctx context.Context) ([]string, error) {
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hosts {
		if h.State.ComingUp() && h.Role == ec2host.Role {
			out = append(out, h.Name)
		}
	}
	return out, nil
}

// LaunchInstances boots the instances ids and follows them to ready (SSH
// with the pinned key); one that does not get there is deleted and left
// terminated with the reason: nothing half-made.
func (s *Session) LaunchInstances(ctx context.Context, ids []string) error {
	what := "instances:run " + s.Env.Name
	if err := dryRunGate(s.Options, what); err != nil {
		return err
	}
	l, err := s.Lock(ctx, what)
	if err != nil {
		return err
	}
	defer func() { l.Release() }()
	err = func() error {
		if err := s.StartController(ctx); err != nil {
			return err
		}
		if err := s.RouteMetadata(ctx); err != nil {
			return err
		}
		var errs []error
		failed := map[string]string{} // why an instance could not even be started
		for _, id := range ids {
			if err := s.Life().Launch(ctx, id, s.WriteMetadata); err != nil {
				failed[id] = err.Error()
			}
		}
		// While the instances boot (minutes for a VM or a node), the
		// environment's lock goes between the rounds of the wait: an
		// operator's operation runs in between instead of waiting for
		// the launch; each round (the boot log read, the hosts checked)
		// holds it.
		// (taken again however long an operator's operation holds it:
		// the launch is bounded by its context, not by BOOTED_LOCK_WAIT)
		pause := func(wait func() error) error {
			l.Release()
			werr := wait()
			nl, err := s.lockWaiting(ctx, what, launchTimeout)
			if err != nil {
				return err
			}
			l = nl
			return werr
		}
		if err := s.Life().AwaitPhoneHome(ctx, func() *discovery.Discoverer { d := s.Discoverer(); d.Pause = pause; return d }); err != nil {
			return err
		}
		if err := s.Filter(ctx); err != nil {
			return err
		}
		for _, id := range ids {
			h, err := s.Store.Host(ctx, s.Env.Name, id)
			if err != nil {
				return err
			}
			if h.State.Up() {
				continue
			}
			why := h.Reason
			if f, ok := failed[id]; ok {
				why = f
			} else if why == "" {
				why = "not ready: " + string(h.State)
			}
			s.Life().Delete(context.WithoutCancel(ctx), id, true)
			metadata.Remove(s.Ctl.MetadataDir(), h.Addr) // its user data is no longer served at its address
			s.Advance(context.WithoutCancel(ctx), id, inventory.Failed, why)
			if err := s.Life().Retire(context.WithoutCancel(ctx), id, inventory.Terminated, "launch failed: "+why); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, fmt.Errorf("instance %s: %s", id, why))
		}
		return errors.Join(errs...)
	}()
	return err
}

// restChanges do restapi.Changes, by change, as their targets do.
var restChanges = map[string]func(ctx context.Context, o Options, env, name, arg string) error{
	"network.create": func(ctx context.Context, o Options, env, name, _ string) error { return NetCreate(ctx, o, env, name) },
	"network.delete": func(ctx context.Context, o Options, env, name, _ string) error { return NetDel(ctx, o, env, name) },
	"node.create":    func(ctx context.Context, o Options, env, name, _ string) error { return NodeCreate(ctx, o, env, name) },
	"node.delete":    func(ctx context.Context, o Options, env, name, _ string) error { return NodeDel(ctx, o, env, name) },
	"node.deploy": func(ctx context.Context, o Options, env, name, arg string) error {
		return NodeDeploy(ctx, o, env, name, arg)
	},
	"osimage.import": func(ctx context.Context, o Options, env, name, arg string) error {
		return OSImageImport(ctx, o, env, arg, name)
	},
	"osimage.delete": func(ctx context.Context, o Options, env, name, _ string) error { return OSImageDel(ctx, o, env, name) },
	"host.power": func(ctx context.Context, o Options, env, name, arg string) error {
		return Power(ctx, o, arg, env, name)
	},
	"host.rebuild": func(ctx context.Context, o Options, env, name, _ string) error {
		return HostsRebuild(ctx, o, env, name)
	},
}
