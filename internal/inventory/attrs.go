package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Attributes are an operator's facts about hosts (clusto's attributes):
// each key has one or more values, in the order they were added. Pools are
// named sets of hosts; a host may be in any number of them. Both go when
// the host is forgotten.

// AttrOp is what Tx.SetAttr does to a key.
type AttrOp string

// The attribute operations of hosts:attr.
const (
	AttrAdd AttrOp = "add" // append values
	AttrSet AttrOp = "set" // replace every value
	AttrDel AttrOp = "del" // remove the given values, or the key
)

// Attrs returns host's attributes.
func (tx *Tx) Attrs(env, host string) (map[string][]string, error) {
	all, err := tx.attrs(env, host)
	return all[host], err
}

func (tx *Tx) attrs(env, host string) (map[string]map[string][]string, error) {
	q := `SELECT host, key, value FROM host_attrs WHERE env = ?`
	args := []any{env}
	if host != "" {
		q += ` AND host = ?`
		args = append(args, host)
	}
	rows, err := tx.query(q+` ORDER BY host, key, pos`, args...)
	if err != nil {
		return nil, fmt.Errorf("inventory: attributes: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string][]string{}
	for rows.Next() {
		var h, k, v string
		if err := rows.Scan(&h, &k, &v); err != nil {
			return nil, fmt.Errorf("inventory: attributes: %w", err)
		}
		if out[h] == nil {
			out[h] = map[string][]string{}
		}
		out[h][k] = append(out[h][k], v)
	}
	return out, rows.Err()
}

// ChangeAttr adds, sets or deletes values of key on host (a recorded
// host); it records an event saying what changed.
func (tx *Tx) ChangeAttr(env, host string, op AttrOp, key string, values []string) error {
	if err := tx.write(); err != nil {
		return err
	}
	if _, err := tx.Host(env, host); err != nil {
		return err
	}
	cur, err := tx.Attrs(env, host)
	if err != nil {
		return err
	}
	vs := cur[key]
	switch op {
	case AttrAdd:
		for _, v := range values {
			if !slices.Contains(vs, v) {
				vs = append(vs, v)
			}
		}
	case AttrSet:
		vs = slices.Clone(values)
	case AttrDel:
		if len(values) == 0 {
			vs = nil
		} else {
			vs = slices.DeleteFunc(vs, func(v string) bool { return slices.Contains(values, v) })
		}
	default:
		return fmt.Errorf("inventory: attribute operation %q: use add, set or del", op)
	}
	if slices.Equal(vs, cur[key]) {
		return nil // nothing changes: no write, no event
	}
	if _, err := tx.exec(`DELETE FROM host_attrs WHERE env = ? AND host = ? AND key = ?`, env, host, key); err != nil {
		return fmt.Errorf("inventory: attributes: %w", err)
	}
	for i, v := range vs {
		if _, err := tx.exec(`INSERT INTO host_attrs (env, host, key, pos, value) VALUES (?,?,?,?,?)`, env, host, key, i, v); err != nil {
			return fmt.Errorf("inventory: attributes: %w", err)
		}
	}
	return tx.Record(Event{Env: env, Host: host, Kind: "attr", Detail: fmt.Sprintf("%s %s: %s", op, key, strings.Join(vs, ","))})
}

// AllAttrs returns every host's attributes, by host name.
func (s *Store) AllAttrs(ctx context.Context, env string) (out map[string]map[string][]string, err error) {
	err = s.View(ctx, func(tx *Tx) error { out, err = tx.attrs(env, ""); return err })
	return out, err
}

// ChangePool adds hosts (recorded hosts) to pool, or removes them.
func (tx *Tx) ChangePool(env, pool string, add bool, hosts []string) error {
	if err := tx.write(); err != nil {
		return err
	}
	for _, h := range hosts {
		q := `DELETE FROM pools WHERE env = ? AND pool = ? AND host = ?`
		if add {
			if _, err := tx.Host(env, h); err != nil {
				return err
			}
			q = `INSERT INTO pools (env, pool, host) VALUES (?,?,?) ON CONFLICT DO NOTHING`
		}
		if _, err := tx.exec(q, env, pool, h); err != nil {
			return fmt.Errorf("inventory: pools: %w", err)
		}
		what := "added to"
		if !add {
			what = "removed from"
		}
		if err := tx.Record(Event{Env: env, Host: h, Kind: "pool", Detail: what + " " + pool}); err != nil {
			return err
		}
	}
	return nil
}

// Pools returns the pools of env, each with its hosts (sorted).
func (s *Store) Pools(ctx context.Context, env string) (map[string][]string, error) {
	rows, err := s.query(ctx, `SELECT pool, host FROM pools WHERE env = ? ORDER BY pool, host`, env)
	if err != nil {
		return nil, fmt.Errorf("inventory: pools: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var p, h string
		if err := rows.Scan(&p, &h); err != nil {
			return nil, fmt.Errorf("inventory: pools: %w", err)
		}
		out[p] = append(out[p], h)
	}
	return out, rows.Err()
}

// SetFacts replaces the attributes booted gathered from host (its facts:
// each key given replaces that key's values), with one event.
func (tx *Tx) SetFacts(env, host string, facts map[string][]string) error {
	if err := tx.write(); err != nil {
		return err
	}
	if _, err := tx.Host(env, host); err != nil {
		return err
	}
	var parts []string
	for _, k := range sortedKeys(facts) {
		if _, err := tx.exec(`DELETE FROM host_attrs WHERE env = ? AND host = ? AND key = ?`, env, host, k); err != nil {
			return fmt.Errorf("inventory: facts: %w", err)
		}
		for i, v := range facts[k] {
			if _, err := tx.exec(`INSERT INTO host_attrs (env, host, key, pos, value) VALUES (?,?,?,?,?)`, env, host, k, i, v); err != nil {
				return fmt.Errorf("inventory: facts: %w", err)
			}
		}
		parts = append(parts, k+" "+strings.Join(facts[k], ","))
	}
	return tx.Record(Event{Env: env, Host: host, Kind: "facts", Detail: strings.Join(parts, "; ")})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
