package session

import (
	"context"

	"booted/internal/inventory"
)

// BuildHost makes host n through its provider and records it.
func (s *Session) BuildHost(ctx context.Context, n string) error {
	spec, err := s.Spec(n)
	if err != nil {
		return err
	}
	_, err = s.Life().Build(ctx, spec)
	return err
}

// DeleteHost deletes host n (BOOTED_FORCE: even running) and records it
// terminated.
func (s *Session) DeleteHost(ctx context.Context, n string) error {
	if err := s.Life().Delete(ctx, n, s.Force); err != nil {
		return err
	}
	return s.Life().Retire(ctx, n, inventory.Terminated, "")
}
