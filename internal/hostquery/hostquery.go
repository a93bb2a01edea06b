// Package hostquery answers questions about an environment's hosts
// (clusto's): which hosts an expression matches (package query), what a
// host is as a query sees it (its fields, attributes, pools, classes,
// where it is), the classes a role needs, the operator's attributes and
// pools, a pick of hosts spread over an attribute, where a host is.
package hostquery

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"booted/internal/config"
	"booted/internal/facts"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/provider"
	"booted/internal/query"
)

// Q answers for one open environment.
type Q struct {
	Env   *config.Env
	Store *inventory.Store
	// Provider is the provider of host name (where it is, its stages).
	Provider func(name string) provider.Provider
	// Warn is where a host left out of its role is said, once per Q.
	Warn   io.Writer
	warned map[string]bool
}

// ReservedAttrs are the attributes booted fills itself: an operator cannot
// set them (they are matched by attr:KEY all the same).
var ReservedAttrs = append([]string{"ip", "address", "mac", "provider", "bmc", "stage", "name", "role", "state"}, facts.Keys...)

// Reserved says whether key is booted's (ReservedAttrs, ec2.*).
func Reserved(key string) bool {
	return slices.Contains(ReservedAttrs, key) || strings.HasPrefix(key, "ec2.")
}

// MissingClasses are the classes of h's role that h is not in.
func (q *Q) MissingClasses(h inventory.Host, sub *query.Subject) []string {
	rl := q.Env.Roles[h.Role]
	if rl == nil {
		return nil
	}
	var out []string
	for _, c := range rl.Classes {
		if !slices.Contains(sub.Classes, c) {
			out = append(out, c)
		}
	}
	return out
}

// WithClasses keeps the hosts that are in every class their role needs;
// each left out is said on Warn (once).
func (q *Q) WithClasses(ctx context.Context, hosts []inventory.Host) ([]inventory.Host, error) {
	need := false
	for _, rl := range q.Env.Roles {
		need = need || len(rl.Classes) > 0
	}
	if !need {
		return hosts, nil
	}
	subs, err := q.Subjects(ctx, hosts)
	if err != nil {
		return nil, err
	}
	var out []inventory.Host
	for _, h := range hosts {
		if miss := q.MissingClasses(h, subs[h.Name]); len(miss) > 0 {
			if q.warned == nil {
				q.warned = map[string]bool{}
			}
			if !q.warned[h.Name] && q.Warn != nil {
				fmt.Fprintf(q.Warn, "host %s: not used for role %s: %s\n", h.Name, h.Role, q.ClassWhy(miss))
				q.warned[h.Name] = true
			}
			continue
		}
		out = append(out, h)
	}
	return out, nil
}

// ClassWhy says which classes a host lacks, with their conditions.
func (q *Q) ClassWhy(miss []string) string {
	var parts []string
	for _, c := range miss {
		parts = append(parts, fmt.Sprintf("%s (%s)", c, q.Env.Classes[c]))
	}
	return "not in class " + strings.Join(parts, ", ")
}

// Subjects makes the query subject of each host: its own fields, its
// attributes (the operator's and booted's), its pools, where it is, its
// classes.
func (q *Q) Subjects(ctx context.Context, hosts []inventory.Host) (map[string]*query.Subject, error) {
	attrs, err := q.Store.AllAttrs(ctx, q.Env.Name)
	if err != nil {
		return nil, err
	}
	pools, err := q.Store.Pools(ctx, q.Env.Name)
	if err != nil {
		return nil, err
	}
	inPools := map[string][]string{}
	for p, hs := range pools {
		for _, h := range hs {
			inPools[h] = append(inPools[h], p)
		}
	}
	for _, ps := range inPools {
		sort.Strings(ps)
	}
	out := make(map[string]*query.Subject, len(hosts))
	for _, h := range hosts {
		a := map[string][]string{}
		for k, vs := range attrs[h.Name] {
			a[k] = vs
		}
		for k, v := range map[string]string{"ip": h.Addr, "address": h.Addr, "mac": h.MAC, "provider": h.Provider} {
			if v != "" {
				a[k] = []string{v}
			}
		}
		sub := &query.Subject{Name: h.Name, Role: h.Role, State: string(h.State), Provider: h.Provider, Pools: inPools[h.Name], Attrs: a}
		p := q.Provider(h.Name)
		if l, ok := p.(provider.Locator); ok {
			if loc, err := l.Locate(h.Name); err == nil {
				for _, c := range []string{loc.Bridge, loc.Network, loc.BMC} {
					if c != "" {
						sub.Connected = append(sub.Connected, c)
					}
				}
				if loc.BMC != "" {
					a["bmc"] = []string{loc.BMC}
				}
			}
		}
		if _, ok := p.(provider.Stages); ok && h.State == inventory.Booting {
			var stage string // STAGE@TIME, the last a booting node reached
			if found, _ := q.Store.Get(ctx, q.Env.Name, "stage/"+h.Name, &stage); found && stage != "" {
				a["stage"] = []string{strings.SplitN(stage, "@", 2)[0]}
			}
		}
		for _, c := range slices.Sorted(maps.Keys(q.Env.ClassExprs)) {
			if q.Env.ClassExprs[c].Match(sub) {
				sub.Classes = append(sub.Classes, c)
			}
		}
		out[h.Name] = sub
	}
	return out, nil
}

// Selector parses a target's host selector (the part after ENV/): a role
// of the env file is that role exactly; anything else is an expression
// (see package query). A bad expression is refused before anything acts.
func (q *Q) Selector(sel string) (query.Expr, error) {
	if sel == "" {
		return nil, nil
	}
	if _, ok := q.Env.Roles[sel]; ok {
		return query.Parse("role:" + sel)
	}
	e, err := query.Parse(sel)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", q.Env.Name, sel, err)
	}
	return e, nil
}

// Matching keeps the hosts expression e matches (all of them when e is nil).
func (q *Q) Matching(ctx context.Context, e query.Expr, hosts []inventory.Host) ([]inventory.Host, error) {
	if e == nil {
		return hosts, nil
	}
	subs, err := q.Subjects(ctx, hosts)
	if err != nil {
		return nil, err
	}
	var out []inventory.Host
	for _, h := range hosts {
		if e.Match(subs[h.Name]) {
			out = append(out, h)
		}
	}
	return out, nil
}

// Hosts returns the inventory's hosts expr matches (all when empty).
func (q *Q) Hosts(ctx context.Context, expr string) ([]inventory.Host, error) {
	var e query.Expr
	if expr != "" {
		var err error
		if e, err = query.Parse(expr); err != nil {
			return nil, err
		}
	}
	hosts, err := q.Store.Hosts(ctx, q.Env.Name)
	if err != nil {
		return nil, err
	}
	return q.Matching(ctx, e, hosts)
}

// AttrRow is one attribute of a host with its values.
type AttrRow struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// Attrs returns host's attributes (key "": all of them) as a query sees
// them, by key.
func (q *Q) Attrs(ctx context.Context, host, key string) ([]AttrRow, error) {
	h, err := q.Store.Host(ctx, q.Env.Name, host)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w (hosts:list %s shows the inventory)", host, err, q.Env.Name)
	}
	subs, err := q.Subjects(ctx, []inventory.Host{h})
	if err != nil {
		return nil, err
	}
	var rows []AttrRow
	for k, vs := range subs[host].Attrs {
		if key == "" || key == k {
			rows = append(rows, AttrRow{k, vs})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
	return rows, nil
}

// ChangeAttr adds, sets or deletes (op) values of an operator's attribute
// key of host; keys booted fills itself are refused.
func (q *Q) ChangeAttr(ctx context.Context, host, op, key string, values []string) error {
	switch {
	case op != "add" && op != "set" && op != "del":
		return outcome.Refuse("attribute operation %q: use add, set or del", op)
	case Reserved(key):
		return outcome.Refuse("%q is an attribute booted fills itself (%s, ec2.*): choose another key", key, strings.Join(ReservedAttrs, ", "))
	case key == "" || strings.ContainsAny(key, "=:,\"()<>! "):
		return outcome.Refuse("key %q: a key is a word without = : , \" ( ) < > ! (queries write attr:KEY=VALUE)", key)
	case op != "del" && len(values) == 0:
		return outcome.Refuse("%s %s: give the values", op, key)
	}
	err := q.Store.Update(ctx, func(tx *inventory.Tx) error {
		return tx.ChangeAttr(q.Env.Name, host, inventory.AttrOp(op), key, values)
	})
	if err != nil {
		return fmt.Errorf("host %s: %w (hosts:list %s shows the inventory)", host, err, q.Env.Name)
	}
	return nil
}

var poolRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// CheckPool refuses what is not a pool name.
func CheckPool(pool string) error {
	if !poolRE.MatchString(pool) {
		return outcome.Refuse("%q is not a pool name (letters, digits, - _ ., at most 63)", pool)
	}
	return nil
}

// ChangePool adds hosts to pool, or removes them.
func (q *Q) ChangePool(ctx context.Context, pool string, add bool, hosts []string) error {
	if err := CheckPool(pool); err != nil {
		return err
	}
	return q.Store.Update(ctx, func(tx *inventory.Tx) error {
		if err := tx.ChangePool(q.Env.Name, pool, add, hosts); err != nil {
			return fmt.Errorf("pool %s: %w (hosts:list %s shows the inventory)", pool, err, q.Env.Name)
		}
		return nil
	})
}

// PoolRow is a pool with its hosts.
type PoolRow struct {
	Pool  string   `json:"pool"`
	Hosts []string `json:"hosts"`
}

// Pools returns the pools with their hosts, by name.
func (q *Q) Pools(ctx context.Context) ([]PoolRow, error) {
	pools, err := q.Store.Pools(ctx, q.Env.Name)
	if err != nil {
		return nil, err
	}
	rows := []PoolRow{}
	for _, p := range slices.Sorted(maps.Keys(pools)) {
		rows = append(rows, PoolRow{p, pools[p]})
	}
	return rows, nil
}

// Pick answers clusto's question "n hosts that expr matches, each with a
// different value of attribute key" (say, 4 unallocated servers in 4
// racks): the first host (by name) of each distinct value, n of them, or
// an error saying how many distinct values there are.
func (q *Q) Pick(ctx context.Context, expr string, n int, key string) ([]inventory.Host, error) {
	hosts, err := q.Hosts(ctx, expr)
	if err != nil {
		return nil, err
	}
	subs, err := q.Subjects(ctx, hosts)
	if err != nil {
		return nil, err
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	seen := map[string]bool{}
	var picked []inventory.Host
	for _, h := range hosts {
		vs := subs[h.Name].Attrs[key]
		if len(vs) == 0 || seen[vs[0]] || len(picked) == n {
			continue
		}
		seen[vs[0]] = true
		picked = append(picked, h)
	}
	if len(picked) < n {
		return nil, fmt.Errorf("%d hosts match %q with %d distinct values of %s; %d asked (hosts:query %s %q lists them)", len(hosts), expr, len(picked), key, n, q.Env.Name, expr)
	}
	return picked, nil
}

// LocateRow is where a host is.
type LocateRow struct {
	Host     string `json:"host"`
	Provider string `json:"provider"`
	IP       string `json:"ip,omitempty"`
	MAC      string `json:"mac,omitempty"`
	provider.Location
	// Rack and U are the operator's attributes rack and u, when set.
	Rack string `json:"rack,omitempty"`
	U    string `json:"u,omitempty"`
}

// Locate says where host is (clusto's locate): its provider, address and
// MAC, the bridge or network it is on and its port there (veth, tap,
// NIC), its BMC, and the rack and U attributes when set.
func (q *Q) Locate(ctx context.Context, host string) (LocateRow, error) {
	h, err := q.Store.Host(ctx, q.Env.Name, host)
	if err != nil {
		return LocateRow{}, fmt.Errorf("host %s: %w (hosts:list %s shows the inventory)", host, err, q.Env.Name)
	}
	row := LocateRow{Host: h.Name, Provider: q.Env.ProviderOf(h.Name), IP: h.Addr, MAC: h.MAC}
	if l, ok := q.Provider(h.Name).(provider.Locator); ok {
		if row.Location, err = l.Locate(h.Name); err != nil {
			return LocateRow{}, err
		}
	}
	attrs, err := q.Store.AllAttrs(ctx, q.Env.Name)
	if err != nil {
		return LocateRow{}, err
	}
	if v := attrs[h.Name]["rack"]; len(v) > 0 {
		row.Rack = v[0]
	}
	if v := attrs[h.Name]["u"]; len(v) > 0 {
		row.U = v[0]
	}
	return row, nil
}
