package session

import (
	"context"
	"os"
	"path/filepath"

	"booted/internal/metallab"
)

// DownLab removes an environment's emulated machines, if it has any.
func (s *Session) DownLab(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.Dir, "lab")); err != nil {
		return nil
	}
	lab, err := metallab.ForEnv(s.Env, s.Dir)
	if err != nil {
		return nil
	}
	return lab.Down(ctx)
}
