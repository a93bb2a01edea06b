// Package restbackend is the REST API's backend over an environment: its
// hosts as the API shows them (with attributes, pools, classes), the
// operator's attributes and pools, events, the bare-metal listings (the
// rows node:list, net:list and osimage:list show), and the changes, each
// done by the operation the matching target does.
package restbackend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/outcome"
	"booted/internal/restapi"
)

// Env is an environment open for one call.
type Env interface {
	Name() string
	Store() *inventory.Store
	Query() *hostquery.Q
	// Metal is the environment's bare-metal administration, or an error
	// when it has none.
	Metal(target string) (*metaladmin.Admin, error)
}

// Envs opens the environment for a call: View without its lock, Change
// under it, what naming the operation for whoever waits on the lock.
type Envs interface {
	View(ctx context.Context, fn func(Env) error) error
	Change(ctx context.Context, what string, fn func(Env) error) error
}

// Changer does one of restapi.Changes as its target does (each takes the
// environment's lock itself) and returns what it printed.
type Changer func(ctx context.Context, what, name, arg string) (string, error)

// Backend is the REST API's backend.
type Backend struct {
	Envs Envs
	// Do does the changes.
	Do Changer
}

var _ restapi.Backend = (*Backend)(nil)

// hosts turns inventory hosts into the API's.
func hosts(ctx context.Context, e Env, hs []inventory.Host) ([]restapi.Host, error) {
	subs, err := e.Query().Subjects(ctx, hs)
	if err != nil {
		return nil, err
	}
	attrs, err := e.Store().AllAttrs(ctx, e.Name())
	if err != nil {
		return nil, err
	}
	out := make([]restapi.Host, 0, len(hs))
	for _, h := range hs {
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

func (b *Backend) Hosts(ctx context.Context, q string) (out []restapi.Host, err error) {
	err = b.Envs.View(ctx, func(e Env) error {
		hs, err := e.Query().Hosts(ctx, q)
		if err == nil {
			out, err = hosts(ctx, e, hs)
		}
		return err
	})
	return out, err
}

func (b *Backend) Host(ctx context.Context, name string) (out restapi.Host, err error) {
	err = b.Envs.View(ctx, func(e Env) error {
		h, err := e.Store().Host(ctx, e.Name(), name)
		if err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
		hs, err := hosts(ctx, e, []inventory.Host{h})
		if err == nil {
			out = hs[0]
		}
		return err
	})
	return out, err
}

// Refused makes the operations' refusals (outcome.Refuse) the API's 400s.
func Refused(err error) error {
	var ie *outcome.Refusal
	if errors.As(err, &ie) {
		return restapi.Errorf("InvalidParameterValue", "%s", ie.Msg)
	}
	return err
}

func (b *Backend) ChangeAttr(ctx context.Context, host string, c restapi.AttrChange) error {
	return Refused(b.Envs.Change(ctx, "api: attr "+host, func(e Env) error {
		return e.Query().ChangeAttr(ctx, host, c.Op, c.Key, c.Values)
	}))
}

func (b *Backend) Pools(ctx context.Context) (out []restapi.Pool, err error) {
	err = b.Envs.View(ctx, func(e Env) error {
		rows, err := e.Query().Pools(ctx)
		for _, r := range rows {
			out = append(out, restapi.Pool{Name: r.Pool, Hosts: r.Hosts})
		}
		return err
	})
	return out, err
}

func (b *Backend) ChangePool(ctx context.Context, pool, host string, add bool) error {
	if err := hostquery.CheckPool(pool); err != nil {
		return Refused(err)
	}
	return b.Envs.Change(ctx, "api: pool "+pool, func(e Env) error {
		return e.Query().ChangePool(ctx, pool, add, []string{host})
	})
}

func (b *Backend) Events(ctx context.Context, host string, limit int) (out []inventory.Event, err error) {
	err = b.Envs.View(ctx, func(e Env) error {
		out, err = e.Store().Events(ctx, e.Name(), host, limit)
		return err
	})
	return out, err
}

// listings are the bare-metal listings, by kind.
var listings = map[string]func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error){
	"networks": func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error) {
		return rawRows(a.Networks(), nil)
	},
	"nodes": func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error) {
		return rawRows(a.Nodes(ctx))
	},
	"osimages": func(ctx context.Context, a *metaladmin.Admin) ([]json.RawMessage, error) {
		return rawRows(a.OSImages())
	},
}

// Listing returns the rows of the bare-metal listing kind (networks,
// nodes, osimages), each as JSON; an environment without bare metal has
// none.
func (b *Backend) Listing(ctx context.Context, kind string) ([]json.RawMessage, error) {
	rows := listings[kind]
	if rows == nil {
		return nil, restapi.Errorf("NotFound", "no listing %q", kind)
	}
	var out []json.RawMessage
	err := b.Envs.View(ctx, func(e Env) error {
		a, err := e.Metal(kind)
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
		j, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

func (b *Backend) Change(ctx context.Context, what, name, arg string) (string, error) {
	for _, c := range restapi.Changes {
		if c == what {
			out, err := b.Do(ctx, what, name, arg)
			return out, Refused(err)
		}
	}
	return "", restapi.Errorf("InvalidRequest", "no change %q", what)
}
