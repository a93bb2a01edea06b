package session

import (
	"context"
	"fmt"
	"time"
)

// consoleCapEvery is how often a long-running process (api:serve, the
// monitor daemon) caps the hosts' console logs.
const consoleCapEvery = time.Minute

// capConsoles caps the hosts' console logs now and every consoleCapEvery
// until ctx ends (lifecycle.Hosts.CapConsoles): a tenant's instance that
// prints without end must not fill the controller's disk.
func (s *Session) capConsoles(ctx context.Context) {
	t := time.NewTicker(consoleCapEvery)
	defer t.Stop()
	for {
		if err := s.Life().CapConsoles(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(s.Err, "%s: %v\n", s.Env.Name, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
