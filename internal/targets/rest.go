package targets

import (
	"booted/internal/outcome"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"booted/internal/ec2backend"
	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/monitor"
	"booted/internal/restapi"
)

// restBackend is the REST API's work, done with the targets' functions on
// environment env (each call opens it, as a target does).
type restBackend struct {
	r   *Runner
	env string
}

var _ restapi.Backend = (*restBackend)(nil)

// restHosts turns inventory hosts into the API's.
func (s *session) restHosts(ctx context.Context, hosts []inventory.Host) ([]restapi.Host, error) {
	subs, err := s.query().Subjects(ctx, hosts)
	if err != nil {
		return nil, err
	}
	attrs, err := s.store.AllAttrs(ctx, s.env.Name)
	if err != nil {
		return nil, err
	}
	out := make([]restapi.Host, 0, len(hosts))
	for _, h := range hosts {
		a := attrs[h.Name]
		if a == nil {
			a = map[string][]string{}
		}
		sub := subs[h.Name]
		out = append(out, restapi.Host{Name: h.Name, Role: h.Role, State: string(h.State), IP: h.Addr, MAC: h.MAC, Provider: h.Provider,
			HostKey: h.HostKey, Since: h.Since.UTC(), Reason: h.Reason, Attrs: a,
			Pools: append([]string{}, sub.Pools...), Classes: append([]string{}, sub.Classes...)})
	}
	return out, nil
}

func (b *restBackend) Hosts(ctx context.Context, q string) (out []restapi.Host, err error) {
	err = b.r.withEnv(ctx, b.env, func(s *session) error {
		hosts, err := s.query().Hosts(ctx, q)
		if err == nil {
			out, err = s.restHosts(ctx, hosts)
		}
		return err
	})
	return out, err
}

func (b *restBackend) Host(ctx context.Context, name string) (out restapi.Host, err error) {
	err = b.r.withEnv(ctx, b.env, func(s *session) error {
		h, err := s.store.Host(ctx, s.env.Name, name)
		if err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
		hs, err := s.restHosts(ctx, []inventory.Host{h})
		if err == nil {
			out = hs[0]
		}
		return err
	})
	return out, err
}

// refused makes the targets' refusals the API's 400s.
func refused(err error) error {
	var ie *outcome.Refusal
	if errors.As(err, &ie) {
		return restapi.Errorf("InvalidParameterValue", "%s", ie.Msg)
	}
	return err
}

func (b *restBackend) ChangeAttr(ctx context.Context, host string, c restapi.AttrChange) error {
	return refused(b.r.withLock(ctx, b.env, "api: attr "+b.env+" "+host, func(s *session) error {
		return s.query().ChangeAttr(ctx, host, c.Op, c.Key, c.Values)
	}))
}

func (b *restBackend) Pools(ctx context.Context) (out []restapi.Pool, err error) {
	err = b.r.withEnv(ctx, b.env, func(s *session) error {
		pools, err := s.store.Pools(ctx, s.env.Name)
		for _, p := range slices.Sorted(maps.Keys(pools)) {
			out = append(out, restapi.Pool{Name: p, Hosts: pools[p]})
		}
		return err
	})
	return out, err
}

func (b *restBackend) ChangePool(ctx context.Context, pool, host string, add bool) error {
	if err := hostquery.CheckPool(pool); err != nil {
		return refused(err)
	}
	return b.r.withLock(ctx, b.env, "api: pool "+b.env+" "+pool, func(s *session) error {
		return s.store.Update(ctx, func(tx *inventory.Tx) error { return tx.ChangePool(s.env.Name, pool, add, []string{host}) })
	})
}

func (b *restBackend) Events(ctx context.Context, host string, limit int) (out []inventory.Event, err error) {
	err = b.r.withEnv(ctx, b.env, func(s *session) error {
		out, err = s.store.Events(ctx, s.env.Name, host, limit)
		return err
	})
	return out, err
}

// Listing returns the rows of the bare-metal listing kind (networks,
// nodes, osimages), each as JSON; an environment without bare metal has
// none.
func (b *restBackend) Listing(ctx context.Context, kind string) ([]json.RawMessage, error) {
	rows := map[string]func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error){
		"networks": func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error) {
			return rawRows(a.Networks(), nil)
		},
		"nodes": func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error) {
			return rawRows(a.Nodes(ctx))
		},
		"osimages": func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error) {
			return rawRows(a.OSImages())
		},
	}[kind]
	if rows == nil {
		return nil, restapi.Errorf("NotFound", "no listing %q", kind)
	}
	var out []json.RawMessage
	err := b.r.withEnv(ctx, b.env, func(s *session) error {
		a, err := s.metal(kind)
		if err != nil {
			return nil // no bare metal: nothing to list
		}
		out, err = rows(ctx, a)
		return err
	})
	return out, err
}

// rawRows is each of rows as JSON.
func rawRows[T any](rows []T, err error) ([]json.RawMessage, error) {
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(rows))
	for _, x := range rows {
		b, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Change does a change of the REST API with the target that does it, and
// returns what the target printed.
func (b *restBackend) Change(ctx context.Context, what, name, arg string) (string, error) {
	var buf bytes.Buffer
	r := *b.r
	r.Out, r.JSON = &buf, false
	var err error
	switch what {
	case "network.create":
		err = r.NetCreate(ctx, b.env, name)
	case "network.delete":
		err = r.NetDel(ctx, b.env, name)
	case "node.create":
		err = r.NodeCreate(ctx, b.env, name)
	case "node.delete":
		err = r.NodeDel(ctx, b.env, name)
	case "node.deploy":
		err = r.NodeDeploy(ctx, b.env, name, arg)
	case "osimage.import":
		err = r.OSImageImport(ctx, b.env, arg, name)
	case "osimage.delete":
		err = r.OSImageDel(ctx, b.env, name)
	case "host.power":
		err = r.Power(ctx, arg, b.env, name)
	case "host.rebuild":
		err = r.HostsRebuild(ctx, b.env, name)
	default:
		return "", restapi.Errorf("InvalidRequest", "no change %q", what)
	}
	return buf.String(), refused(err)
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
			if s.env.Provider.Type == "local" {
				in.Notices = append(in.Notices, fmt.Sprintf("Instances of %s are local hosts (image %s): namespaces on this controller, not isolated from it, so the EC2 and REST APIs run them for the users api.admins names in envs/%s.yaml alone (%s) and refuse every other user.",
					s.env.Name, ec2backend.Images["local"], s.env.Name, orNone(s.env.API.Admins)))
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
