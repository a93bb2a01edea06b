package targets

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	sess "booted/internal/session"

	"booted/internal/creds"
)

// CredsCreate makes an access key for USER of ENV's EC2 API and writes the
// rc file, credentials and AWS CLI profile USER sources (the secret is in
// the credentials file alone, 0600, never printed).
func (r *Runner) CredsCreate(ctx context.Context, envName, user string) error {
	if err := creds.CheckUser(user); err != nil {
		return err
	}
	return r.withLock(ctx, envName, "creds:create "+envName+" "+user, func(s *session) error {
		st := creds.Store{Dir: filepath.Join(s.Dir, "creds")}
		c, err := st.Create(user)
		if err != nil {
			return err
		}
		rc, err := st.Files(s.Env.Name, c, "http://"+r.APIListen, sess.APIRegion)
		if err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "%s: access key %s for %s; `source %s` points the AWS CLI and boto3 at http://%s/; `curl -K %s http://%s/api/v1/instances` reaches the REST API\n",
			envName, c.AccessKey, user, rc, r.APIListen, strings.TrimSuffix(rc, ".rc")+".curlrc", r.APIListen)
		return nil
	})
}

// APIServe serves the EC2 Query API of ENV on BOOTED_API_LISTEN until it
// is stopped (Ctrl-C): instances, key pairs, for the users of creds:create.
func (r *Runner) APIServe(ctx context.Context, envName string) error {
	return sess.ServeAPI(ctx, r.Options, envName)
}
