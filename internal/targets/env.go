package targets

import (
	"context"
	"fmt"

	"booted/internal/inventory"
)

// EnvStartAll starts every host of every role of an environment (workers
// first, load balancers last), waits for each to phone home, and checks that
// it answers ping and SSH with its pinned key. Re-running it skips what is
// already up.
func (r *Runner) EnvStartAll(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if err := s.startController(ctx); err != nil {
			return err
		}
		for _, role := range s.env.RoleNames() {
			rl := s.env.Roles[role]
			for _, n := range rl.HostNames(rl.Count) {
				if err := s.start(ctx, n); err != nil {
					return err
				}
			}
		}
		if err := s.logged(ctx); err != nil {
			return err
		}
		if err := s.filter(ctx); err != nil {
			return err
		}
		if err := s.printHosts(ctx); err != nil {
			return err
		}
		hosts, err := s.store.Hosts(ctx, s.env.Name)
		if err != nil {
			return err
		}
		var failed []string
		for _, h := range hosts {
			if h.State == inventory.Failed {
				failed = append(failed, h.Name+" ("+h.Reason+")")
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("%s: %d hosts failed: %v", envName, len(failed), failed)
		}
		return nil
	})
}
