package session

import (
	"context"
	"fmt"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
)

// GatherFacts gathers the facts of the hosts that answered the liveness
// check (results[i] for hosts[i]) and came up from a boot (they were
// booted), or have none yet: once per boot, over the connection the check
// made. A host whose facts cannot be read keeps its old ones, said on
// stderr; it is not failed for it.
func (s *Session) GatherFacts(ctx context.Context, hosts []inventory.Host, results []error) error {
	attrs, err := s.Store.AllAttrs(ctx, s.Env.Name)
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
		return s.Store.Update(ctx, func(tx *inventory.Tx) error { return tx.SetFacts(s.Env.Name, h, f) })
	}
	o, step := factsJob.Halves(jobs.Op{}, struct{}{},
		factsHost,
		func(_ context.Context, h inventory.Host, f map[string][]string, err error) (string, error) {
			if err != nil {
				return "", err
			}
			return "", set(h.Name, f)
		})
	res := s.Each(ctx, todo, remote.Options{Parallel: s.Parallel, Timeout: s.Env.Timeouts.Command.D()}, o, step)
	for _, r := range res {
		if r.Status != remote.OK {
			fmt.Fprintf(s.Err, "host %s: facts not gathered: %s\n", r.Host, r.Error)
		}
	}
	return nil
}

// factsHost gathers the host's facts (CPUs, memory, disks, …).
func factsHost(ctx context.Context, c hostConn) (map[string][]string, error) { return c.Facts(ctx) }

// Query is what answers questions about s's hosts (package hostquery),
// made once per session.
func (s *Session) Query() *hostquery.Q {
	s.lazy.Lock()
	defer s.lazy.Unlock()
	if s.q == nil {
		s.q = &hostquery.Q{Env: s.Env, Store: s.Store, Provider: s.ProvOf, Warn: s.Err}
	}
	return s.q
}

// SelectBy returns the hosts (as selectHosts with only) that sel
// matches: a role of the env file, or an expression.
func (s *Session) SelectBy(ctx context.Context, sel string, only func(inventory.Host) bool) ([]inventory.Host, error) {
	if _, ok := s.Env.Roles[sel]; ok || sel == "" {
		return s.Ops().Select(ctx, sel, only)
	}
	e, err := s.Query().Selector(sel)
	if err != nil {
		return nil, err
	}
	hosts, err := s.Ops().Select(ctx, "", only)
	if err != nil {
		return nil, err
	}
	return s.Query().Matching(ctx, e, hosts)
}
