package targets

import (
	"context"
	"errors"
	"fmt"

	"booted/internal/ec2host"
	"booted/internal/inventory"
)

// pendingInstances are the env's instances whose launch has not ended
// (requested, provisioning, booting, booted).
func (r *Runner) pendingInstances(ctx context.Context, envName string) ([]string, error) {
	var out []string
	err := r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.Store.Hosts(ctx, s.Env.Name)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.State.ComingUp() && h.Role == ec2host.Role {
				out = append(out, h.Name)
			}
		}
		return nil
	})
	return out, err
}

// launchInstances boots the instances ids and follows them to ready (SSH
// with the pinned key); one that does not get there is deleted and left
// terminated with the reason: nothing half-made.
func (r *Runner) launchInstances(ctx context.Context, envName string, ids []string) error {
	return r.withLock(ctx, envName, "instances:run "+envName, func(s *session) error {
		if err := s.StartController(ctx); err != nil {
			return err
		}
		if err := s.RouteMetadata(ctx); err != nil {
			return err
		}
		var errs []error
		failed := map[string]string{} // why an instance could not even be started
		for _, id := range ids {
			if err := s.Life().Launch(ctx, id, s.WriteMetadata); err != nil {
				failed[id] = err.Error()
			}
		}
		if err := s.Logged(ctx); err != nil {
			return err
		}
		if err := s.Filter(ctx); err != nil {
			return err
		}
		for _, id := range ids {
			h, err := s.Store.Host(ctx, s.Env.Name, id)
			if err != nil {
				return err
			}
			if h.State.Up() {
				continue
			}
			why := h.Reason
			if f, ok := failed[id]; ok {
				why = f
			} else if why == "" {
				why = "not ready: " + string(h.State)
			}
			s.Life().Delete(context.WithoutCancel(ctx), id, true)
			s.Advance(context.WithoutCancel(ctx), id, inventory.Failed, why)
			if err := s.Life().Retire(context.WithoutCancel(ctx), id, inventory.Terminated, "launch failed: "+why); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, fmt.Errorf("instance %s: %s", id, why))
		}
		return errors.Join(errs...)
	})
}
