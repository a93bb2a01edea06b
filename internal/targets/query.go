package targets

import (
	"context"
	"fmt"
	"strings"

	"booted/internal/outcome"

	"booted/internal/hostquery"
)

// HostsQuery lists the hosts of ENV that EXPR matches (see package query).
func (r *Runner) HostsQuery(ctx context.Context, envName, expr string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.Query().Hosts(ctx, expr)
		if err != nil {
			return fmt.Errorf("hosts:query %s: %w", envName, err)
		}
		return s.PrintHostRows(ctx, hosts)
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
		key := ""
		if len(f) == 2 {
			key = f[1]
		}
		return r.withEnv(ctx, envName, func(s *session) error {
			rows, err := s.Query().Attrs(ctx, host, key)
			if err != nil {
				return fmt.Errorf("hosts:attr: %w", err)
			}
			return printRows(r, rows, []string{"KEY", "VALUES"}, func(x hostquery.AttrRow) []string { return []string{x.Key, strings.Join(x.Values, ",")} })
		})
	case (op == "add" || op == "set") && len(f) >= 3, op == "del" && len(f) >= 2:
	default:
		return usage
	}
	return r.withLock(ctx, envName, "hosts:attr "+envName+" "+host, func(s *session) error {
		if err := s.Query().ChangeAttr(ctx, host, op, f[1], f[2:]); err != nil {
			return fmt.Errorf("hosts:attr: %w", err)
		}
		return nil
	})
}

// HostsPool adds hosts to POOL or removes them: SPEC is "add HOST…" or
// "del HOST…".
func (r *Runner) HostsPool(ctx context.Context, envName, pool, spec string) error {
	f := strings.Fields(spec)
	if len(f) < 2 || (f[0] != "add" && f[0] != "del") {
		return outcome.Refuse("hosts:pool %s %s %q: want \"add HOST…\" or \"del HOST…\"", envName, pool, spec)
	}
	if err := hostquery.CheckPool(pool); err != nil {
		return fmt.Errorf("hosts:pool: %w", err)
	}
	return r.withLock(ctx, envName, "hosts:pool "+envName+" "+pool, func(s *session) error {
		if err := s.Query().ChangePool(ctx, pool, f[0] == "add", f[1:]); err != nil {
			return fmt.Errorf("hosts:%w", err)
		}
		return nil
	})
}

// PoolsList lists the pools of ENV with their hosts.
func (r *Runner) PoolsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		rows, err := s.Query().Pools(ctx)
		if err != nil {
			return err
		}
		return printRows(r, rows, []string{"POOL", "HOSTS"}, func(x hostquery.PoolRow) []string { return []string{x.Pool, strings.Join(x.Hosts, ",")} })
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
		picked, err := s.Query().Pick(ctx, expr, n, key)
		if err != nil {
			return fmt.Errorf("hosts:pick %s: %w", envName, err)
		}
		return s.PrintHostRows(ctx, picked)
	})
}

// HostsLocate says where HOST is (clusto's locate): its provider, address
// and MAC, the bridge or network it is on and its port there (veth, tap,
// NIC), its BMC, and the rack and U attributes when set.
func (r *Runner) HostsLocate(ctx context.Context, envName, host string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		row, err := s.Query().Locate(ctx, host)
		if err != nil {
			return fmt.Errorf("hosts:locate: %w", err)
		}
		if r.JSON {
			return printRows(r, []hostquery.LocateRow{row}, nil, nil)
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
