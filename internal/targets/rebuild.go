package targets

import (
	"context"

	sess "booted/internal/session"
)

// HostsRebuild provisions HOST again from nothing (clusto's rebuild): it
// takes the host out of the load balancers first (they reload gracefully,
// finishing the requests in flight), powers it off and deletes it, builds
// and boots it with a new enrollment (so a new host key, pinned in place
// of the old one, which is refused from then on), then deploys its role's
// service and puts it back. Hosts the provider does not own (static) are
// refused.
func (r *Runner) HostsRebuild(ctx context.Context, envName, host string) error {
	return sess.HostsRebuild(ctx, r.Options, envName, host)
}
