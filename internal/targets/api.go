package targets

import (
	"context"

	sess "booted/internal/session"
)

// CredsCreate makes an access key for USER of ENV's EC2 API and writes the
// rc file, credentials and AWS CLI profile USER sources (the secret is in
// the credentials file alone, 0600, never printed).
func (r *Runner) CredsCreate(ctx context.Context, envName, user string) error {
	return sess.CredsCreate(ctx, r.Options, envName, user)
}

// APIServe serves the EC2 Query API of ENV on BOOTED_API_LISTEN until it
// is stopped (Ctrl-C): instances, key pairs, for the users of creds:create.
func (r *Runner) APIServe(ctx context.Context, envName string) error {
	return sess.ServeAPI(ctx, r.Options, envName)
}
