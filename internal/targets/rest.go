package targets

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	sess "booted/internal/session"

	"booted/internal/monitor"
	"booted/internal/provider/registry"
	"booted/internal/restapi"
	"booted/internal/restbackend"
)

// restBackend is the REST API's backend on environment env: its changes
// are the targets'.
func (r *Runner) restBackend(envName string) *restbackend.Backend {
	return &restbackend.Backend{Envs: sess.RESTEnvs(r.Options, envName), Do: func(ctx context.Context, what, name, arg string) (string, error) {
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
			m := sess.NewMonitorEnv(s.Session)
			saved, err := m.Load(ctx)
			if err != nil {
				return err
			}
			ov, err := m.Overview(ctx)
			if err != nil {
				return err
			}
			p, _, _, _ := m.Policy()
			in = monitor.PageInput{Env: s.Env.Name, SLAP95: p.SLA.P95.D(), SLAErr: p.SLA.ErrorRate, Saved: saved, Overview: ov,
				HostLink: func(h string) string { return "/api/v1/hosts/" + url.PathEscape(h) }}
			if img, _ := registry.Image("local"); s.Env.Provider.Type == "local" {
				in.Notices = append(in.Notices, fmt.Sprintf("Instances of %s are local hosts (image %s): namespaces on this controller, not isolated from it, so the EC2 and REST APIs run them for the users api.admins names in envs/%s.yaml alone (%s) and refuse every other user.",
					s.Env.Name, img, s.Env.Name, orNone(s.Env.API.Admins)))
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
