package targets

import (
	"booted/internal/outcome"
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"booted/internal/facts"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/query"
	"booted/internal/remote"
)

// reservedAttrs are the attributes booted fills itself: an operator cannot
// set them (they are matched by attr:KEY all the same).
var reservedAttrs = append([]string{"ip", "address", "mac", "provider", "bmc", "stage", "name", "role", "state"}, facts.Keys...)

func reservedAttr(key string) bool {
	return slices.Contains(reservedAttrs, key) || strings.HasPrefix(key, "ec2.")
}

// gatherFacts gathers the facts of the hosts that answered the liveness
// check (results[i] for hosts[i]) and came up from a boot (they were
// booted), or have none yet: once per boot, over the connection the check
// made. A host whose facts cannot be read keeps its old ones, said on
// stderr; it is not failed for it.
func (s *session) gatherFacts(ctx context.Context, hosts []inventory.Host, results []error) error {
	attrs, err := s.store.AllAttrs(ctx, s.env.Name)
	if err != nil {
		return err
	}
	var todo []inventory.Host
	for i, h := range hosts {
		if results[i] == nil && (h.State == inventory.Booted || len(attrs[h.Name]["cpus"]) == 0) {
			todo = append(todo, h)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	set := func(h string, f map[string][]string) error {
		return s.store.Update(ctx, func(tx *inventory.Tx) error { return tx.SetFacts(s.env.Name, h, f) })
	}
	o, step := halves(opOptions{}, "facts", nil, true,
		factsHost,
		func(_ context.Context, h inventory.Host, f map[string][]string, err error) (string, error) {
			if err != nil {
				return "", err
			}
			return "", set(h.Name, f)
		})
	res := s.each(ctx, todo, remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.Command.D()}, o, step)
	for _, r := range res {
		if r.Status != remote.OK {
			fmt.Fprintf(s.r.Err, "host %s: facts not gathered: %s\n", r.Host, r.Error)
		}
	}
	return nil
}

// factsHost gathers the host's facts (CPUs, memory, disks, …).
func factsHost(ctx context.Context, c hostConn) (map[string][]string, error) { return c.Facts(ctx) }

// missingClasses are the classes of h's role that h is not in.
func (s *session) missingClasses(h inventory.Host, sub *query.Subject) []string {
	rl := s.env.Roles[h.Role]
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

// withClasses keeps the hosts that are in every class their role needs;
// each left out is said on stderr (once per session).
func (s *session) withClasses(ctx context.Context, hosts []inventory.Host) ([]inventory.Host, error) {
	need := false
	for _, rl := range s.env.Roles {
		need = need || len(rl.Classes) > 0
	}
	if !need {
		return hosts, nil
	}
	subs, err := s.subjects(ctx, hosts)
	if err != nil {
		return nil, err
	}
	var out []inventory.Host
	for _, h := range hosts {
		if miss := s.missingClasses(h, subs[h.Name]); len(miss) > 0 {
			if !s.warned["class/"+h.Name] {
				fmt.Fprintf(s.r.Err, "host %s: not used for role %s: %s\n", h.Name, h.Role, s.classWhy(miss))
				s.warned["class/"+h.Name] = true
			}
			continue
		}
		out = append(out, h)
	}
	return out, nil
}

// classWhy says which classes a host lacks, with their conditions.
func (s *session) classWhy(miss []string) string {
	var parts []string
	for _, c := range miss {
		parts = append(parts, fmt.Sprintf("%s (%s)", c, s.env.Classes[c]))
	}
	return "not in class " + strings.Join(parts, ", ")
}

// subjects makes the query subject of each host: its own fields, its
// attributes (the operator's and booted's), its pools.
func (s *session) subjects(ctx context.Context, hosts []inventory.Host) (map[string]*query.Subject, error) {
	attrs, err := s.store.AllAttrs(ctx, s.env.Name)
	if err != nil {
		return nil, err
	}
	pools, err := s.store.Pools(ctx, s.env.Name)
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
		if l, ok := s.provOf(h.Name).(provider.Locator); ok {
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
		if _, ok := s.provOf(h.Name).(provider.Stages); ok && h.State == inventory.Booting {
			var stage string // STAGE@TIME, the last a booting node reached
			if found, _ := s.store.Get(ctx, s.env.Name, "stage/"+h.Name, &stage); found && stage != "" {
				a["stage"] = []string{strings.SplitN(stage, "@", 2)[0]}
			}
		}
		for _, c := range slices.Sorted(maps.Keys(s.env.ClassExprs)) {
			if s.env.ClassExprs[c].Match(sub) {
				sub.Classes = append(sub.Classes, c)
			}
		}
		out[h.Name] = sub
	}
	return out, nil
}

// selector parses a target's host selector (the part after ENV/): a role
// of the env file is that role exactly; anything else is an expression
// (see package query). A bad expression is refused before anything acts.
func (s *session) selector(sel string) (query.Expr, error) {
	if sel == "" {
		return nil, nil
	}
	if _, ok := s.env.Roles[sel]; ok {
		return query.Parse("role:" + sel)
	}
	e, err := query.Parse(sel)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", s.env.Name, sel, err)
	}
	return e, nil
}

// selectBy returns the hosts (as selectHosts with only) that sel
// matches: a role of the env file, or an expression.
func (s *session) selectBy(ctx context.Context, sel string, only func(inventory.Host) bool) ([]inventory.Host, error) {
	if _, ok := s.env.Roles[sel]; ok || sel == "" {
		return s.selectHosts(ctx, sel, only)
	}
	e, err := s.selector(sel)
	if err != nil {
		return nil, err
	}
	hosts, err := s.selectHosts(ctx, "", only)
	if err != nil {
		return nil, err
	}
	return s.matching(ctx, e, hosts)
}

// matching keeps the hosts expression e matches (all of them when e is nil).
func (s *session) matching(ctx context.Context, e query.Expr, hosts []inventory.Host) ([]inventory.Host, error) {
	if e == nil {
		return hosts, nil
	}
	subs, err := s.subjects(ctx, hosts)
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

// queryHosts returns the inventory's hosts expr matches (all when empty).
func (s *session) queryHosts(ctx context.Context, expr string) ([]inventory.Host, error) {
	var e query.Expr
	if expr != "" {
		var err error
		if e, err = query.Parse(expr); err != nil {
			return nil, err
		}
	}
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return nil, err
	}
	return s.matching(ctx, e, hosts)
}

// HostsQuery lists the hosts of ENV that EXPR matches (see package query).
func (r *Runner) HostsQuery(ctx context.Context, envName, expr string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.queryHosts(ctx, expr)
		if err != nil {
			return fmt.Errorf("hosts:query %s: %w", envName, err)
		}
		return s.printHostRows(ctx, hosts)
	})
}

// HostsAttr changes or shows the attributes of HOST (clusto's attr): SPEC
// is "add KEY VALUE…" (append), "set KEY VALUE…" (replace), "del KEY
// [VALUE…]" (those values, or the key) or "get [KEY]".
func (r *Runner) HostsAttr(ctx context.Context, envName, host, spec string) error {
	f := strings.Fields(spec)
	usage := outcome.Refuse("hosts:attr %s %s %q: want \"add KEY VALUE…\", \"set KEY VALUE…\", \"del KEY [VALUE…]\" or \"get [KEY]\"", envName, host, spec)
	if len(f) == 0 {
		return usage
	}
	op := f[0]
	switch {
	case op == "get" && len(f) <= 2:
		return r.withEnv(ctx, envName, func(s *session) error {
			h, err := s.store.Host(ctx, s.env.Name, host)
			if err != nil {
				return fmt.Errorf("hosts:attr: host %s: %w (hosts:list %s shows the inventory)", host, err, envName)
			}
			subs, err := s.subjects(ctx, []inventory.Host{h})
			if err != nil {
				return err
			}
			type attrRow struct {
				Key    string   `json:"key"`
				Values []string `json:"values"`
			}
			var rows []attrRow
			for k, vs := range subs[host].Attrs {
				if len(f) == 1 || f[1] == k {
					rows = append(rows, attrRow{k, vs})
				}
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
			return printRows(r, rows, []string{"KEY", "VALUES"}, func(x attrRow) []string { return []string{x.Key, strings.Join(x.Values, ",")} })
		})
	case (op == "add" || op == "set") && len(f) >= 3, op == "del" && len(f) >= 2:
	default:
		return usage
	}
	return r.withLock(ctx, envName, "hosts:attr "+envName+" "+host, func(s *session) error {
		if err := s.changeAttr(ctx, host, op, f[1], f[2:]); err != nil {
			return fmt.Errorf("hosts:attr: %w", err)
		}
		return nil
	})
}

// changeAttr adds, sets or deletes (op) values of an operator's attribute
// key of host; keys booted fills itself are refused.
func (s *session) changeAttr(ctx context.Context, host, op, key string, values []string) error {
	switch {
	case op != "add" && op != "set" && op != "del":
		return outcome.Refuse("attribute operation %q: use add, set or del", op)
	case reservedAttr(key):
		return outcome.Refuse("%q is an attribute booted fills itself (%s, ec2.*): choose another key", key, strings.Join(reservedAttrs, ", "))
	case key == "" || strings.ContainsAny(key, "=:,\"()<>! "):
		return outcome.Refuse("key %q: a key is a word without = : , \" ( ) < > ! (queries write attr:KEY=VALUE)", key)
	case op != "del" && len(values) == 0:
		return outcome.Refuse("%s %s: give the values", op, key)
	}
	err := s.store.Update(ctx, func(tx *inventory.Tx) error {
		return tx.ChangeAttr(s.env.Name, host, inventory.AttrOp(op), key, values)
	})
	if err != nil {
		return fmt.Errorf("host %s: %w (hosts:list %s shows the inventory)", host, err, s.env.Name)
	}
	return nil
}

// HostsPool adds hosts to POOL or removes them: SPEC is "add HOST…" or
// "del HOST…".
func (r *Runner) HostsPool(ctx context.Context, envName, pool, spec string) error {
	f := strings.Fields(spec)
	if len(f) < 2 || (f[0] != "add" && f[0] != "del") {
		return outcome.Refuse("hosts:pool %s %s %q: want \"add HOST…\" or \"del HOST…\"", envName, pool, spec)
	}
	if err := checkPool(pool); err != nil {
		return fmt.Errorf("hosts:pool: %w", err)
	}
	return r.withLock(ctx, envName, "hosts:pool "+envName+" "+pool, func(s *session) error {
		return s.store.Update(ctx, func(tx *inventory.Tx) error {
			if err := tx.ChangePool(s.env.Name, pool, f[0] == "add", f[1:]); err != nil {
				return fmt.Errorf("hosts:pool %s: %w (hosts:list %s shows the inventory)", pool, err, envName)
			}
			return nil
		})
	})
}

var poolRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func checkPool(pool string) error {
	if !poolRE.MatchString(pool) {
		return outcome.Refuse("%q is not a pool name (letters, digits, - _ ., at most 63)", pool)
	}
	return nil
}

// PoolsList lists the pools of ENV with their hosts.
func (r *Runner) PoolsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		pools, err := s.store.Pools(ctx, s.env.Name)
		if err != nil {
			return err
		}
		type poolRow struct {
			Pool  string   `json:"pool"`
			Hosts []string `json:"hosts"`
		}
		var rows []poolRow
		for p, hs := range pools {
			rows = append(rows, poolRow{p, hs})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Pool < rows[j].Pool })
		return printRows(r, rows, []string{"POOL", "HOSTS"}, func(x poolRow) []string { return []string{x.Pool, strings.Join(x.Hosts, ",")} })
	})
}

// HostsPick answers clusto's question "N hosts that EXPR matches, each with
// a different value of attribute KEY" (say, 4 unallocated servers in 4
// racks): it lists the first host (by name) of each distinct value, N of
// them, or fails saying how many distinct values there are.
func (r *Runner) HostsPick(ctx context.Context, envName, expr string, n int, key string) error {
	if n < 1 {
		return fmt.Errorf("hosts:pick: N must be at least 1, not %d", n)
	}
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.queryHosts(ctx, expr)
		if err != nil {
			return fmt.Errorf("hosts:pick %s: %w", envName, err)
		}
		subs, err := s.subjects(ctx, hosts)
		if err != nil {
			return err
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
			return fmt.Errorf("hosts:pick: %d hosts match %q with %d distinct values of %s; %d asked (hosts:query %s %q lists them)", len(hosts), expr, len(picked), key, n, envName, expr)
		}
		return s.printHostRows(ctx, picked)
	})
}

// locateRow is what hosts:locate prints.
type locateRow struct {
	Host     string `json:"host"`
	Provider string `json:"provider"`
	IP       string `json:"ip,omitempty"`
	MAC      string `json:"mac,omitempty"`
	provider.Location
	// Rack and U are the operator's attributes rack and u, when set.
	Rack string `json:"rack,omitempty"`
	U    string `json:"u,omitempty"`
}

// HostsLocate says where HOST is (clusto's locate): its provider, address
// and MAC, the bridge or network it is on and its port there (veth, tap,
// NIC), its BMC, and the rack and U attributes when set.
func (r *Runner) HostsLocate(ctx context.Context, envName, host string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		h, err := s.store.Host(ctx, s.env.Name, host)
		if err != nil {
			return fmt.Errorf("hosts:locate: host %s: %w (hosts:list %s shows the inventory)", host, err, envName)
		}
		row := locateRow{Host: h.Name, Provider: s.env.ProviderOf(h.Name), IP: h.Addr, MAC: h.MAC}
		if l, ok := s.provOf(h.Name).(provider.Locator); ok {
			if row.Location, err = l.Locate(h.Name); err != nil {
				return fmt.Errorf("hosts:locate: %w", err)
			}
		}
		attrs, err := s.store.AllAttrs(ctx, s.env.Name)
		if err != nil {
			return err
		}
		if v := attrs[h.Name]["rack"]; len(v) > 0 {
			row.Rack = v[0]
		}
		if v := attrs[h.Name]["u"]; len(v) > 0 {
			row.U = v[0]
		}
		if r.JSON {
			return printRows(r, []locateRow{row}, nil, nil)
		}
		for _, kv := range [][2]string{{"host", row.Host}, {"provider", row.Provider}, {"ip", row.IP}, {"mac", row.MAC}, {"bridge", row.Bridge},
			{"port", row.Port}, {"network", row.Network}, {"bmc", row.BMC}, {"rack", row.Rack}, {"u", row.U}} {
			if kv[1] != "" {
				fmt.Fprintf(r.Out, "%-9s %s\n", kv[0]+":", kv[1])
			}
		}
		return nil
	})
}
