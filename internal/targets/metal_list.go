package targets

import (
	"context"

	"booted/internal/metaladmin"
)

// NodeList lists the nodes of ENV: NICs, BMC (never its password), power as
// its BMC says, whether it is installed (netboot off) and its inventory state.
func (r *Runner) NodeList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		a, err := s.Metal("node:list")
		if err != nil {
			return err
		}
		rows, err := a.Nodes(ctx)
		if err != nil {
			return err
		}
		return printRows(r, rows, metaladmin.NodeHeader, metaladmin.NodeRow.Cells)
	})
}

// NetList lists the networks of ENV with their dnsmasq (its pid, if it runs).
func (r *Runner) NetList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		a, err := s.Metal("net:list")
		if err != nil {
			return err
		}
		return printRows(r, a.Networks(), metaladmin.NetHeader, metaladmin.NetRow.Cells)
	})
}
