package targets

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/monitor"
	"booted/internal/provider/registry"
	"booted/internal/restapi"
	"booted/internal/restbackend"
)

// restEnvs opens environment env for each call of the REST backend
// (restbackend.Envs), as a target does.
type restEnvs struct {
	r   *Runner
	env string
}

func (x restEnvs) View(ctx context.Context, fn func(restbackend.Env) error) error {
	return x.r.withEnv(ctx, x.env, func(s *session) error { return fn(restEnv{s}) })
}

func (x restEnvs) Change(ctx context.Context, what string, fn func(restbackend.Env) error) error {
	return x.r.withLock(ctx, x.env, what+" "+x.env, func(s *session) error { return fn(restEnv{s}) })
}

// restEnv is an open session as the REST backend sees it.
type restEnv struct{ s *session }

func (e restEnv) Name() string                                   { return e.s.env.Name }
func (e restEnv) Store() *inventory.Store                        { return e.s.store }
func (e restEnv) Query() *hostquery.Q                            { return e.s.query() }
func (e restEnv) Metal(target string) (*metaladmin.Admin, error) { return e.s.metal(target) }

// restBackend is the REST API's backend on environment env: its changes
// are the targets'.
func (r *Runner) restBackend(envName string) *restbackend.Backend {
	return &restbackend.Backend{Envs: restEnvs{r, envName}, Do: func(ctx context.Context, what, name, arg string) (string, error) {
		return r.restChange(ctx, envName, what, name, arg)
	}}
}

// restChange does a change of the REST API with the target that does it,
// and returns what the target printed.
func (r *Runner) restChange(ctx context.Context, envName, what, name, arg string) (string, error) {
	do, ok := restChanges[what]
	if !ok {
		return "", restapi.Errorf("InvalidRequest", "no change %q", what)
	}
	var buf bytes.Buffer
	q := *r
	q.Out, q.JSON = &buf, false
	err := do(ctx, &q, envName, name, arg)
	return buf.String(), err
}

// restChanges are the targets that do restapi.Changes, by change.
var restChanges = map[string]func(ctx context.Context, r *Runner, env, name, arg string) error{
	"network.create": func(ctx context.Context, r *Runner, env, name, _ string) error { return r.NetCreate(ctx, env, name) },
	"network.delete": func(ctx context.Context, r *Runner, env, name, _ string) error { return r.NetDel(ctx, env, name) },
	"node.create":    func(ctx context.Context, r *Runner, env, name, _ string) error { return r.NodeCreate(ctx, env, name) },
	"node.delete":    func(ctx context.Context, r *Runner, env, name, _ string) error { return r.NodeDel(ctx, env, name) },
	"node.deploy": func(ctx context.Context, r *Runner, env, name, arg string) error {
		return r.NodeDeploy(ctx, env, name, arg)
	},
	"osimage.import": func(ctx context.Context, r *Runner, env, name, arg string) error {
		return r.OSImageImport(ctx, env, arg, name)
	},
	"osimage.delete": func(ctx context.Context, r *Runner, env, name, _ string) error { return r.OSImageDel(ctx, env, name) },
	"host.power":     func(ctx context.Context, r *Runner, env, name, arg string) error { return r.Power(ctx, arg, env, name) },
	"host.rebuild":   func(ctx context.Context, r *Runner, env, name, _ string) error { return r.HostsRebuild(ctx, env, name) },
}

// statusPage serves the status page (the monitor's) from what the monitor
// kept, each host linking to its JSON in the REST API.
func (r *Runner) statusPage(envName string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		var in monitor.PageInput
		err := r.withEnv(ctx, envName, func(s *session) error {
			m := newMonitorEnv(s)
			saved, err := m.Load(ctx)
			if err != nil {
				return err
			}
			ov, err := m.Overview(ctx)
			if err != nil {
				return err
			}
			p, _, _, _ := m.Policy()
			in = monitor.PageInput{Env: s.env.Name, SLAP95: p.SLA.P95.D(), SLAErr: p.SLA.ErrorRate, Saved: saved, Overview: ov,
				HostLink: func(h string) string { return "/api/v1/hosts/" + url.PathEscape(h) }}
			if img, _ := registry.Image("local"); s.env.Provider.Type == "local" {
				in.Notices = append(in.Notices, fmt.Sprintf("Instances of %s are local hosts (image %s): namespaces on this controller, not isolated from it, so the EC2 and REST APIs run them for the users api.admins names in envs/%s.yaml alone (%s) and refuse every other user.",
					s.env.Name, img, s.env.Name, orNone(s.env.API.Admins)))
			}
			return nil
		})
		if err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		monitor.RenderPage(w, in)
	})
}
