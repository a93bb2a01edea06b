package targets

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	sess "booted/internal/session"

	"booted/internal/apiserver"
	"booted/internal/creds"
	"booted/internal/ec2backend"
)

// apiRegion is the region the rc files name (any region signs; booted
// checks the signature with the one the client used).
const apiRegion = "booted"

// launchTimeout bounds a launch the API started in the background.
const launchTimeout = 30 * time.Minute

// APIServe serves the EC2 Query API of ENV on BOOTED_API_LISTEN until it
// is stopped (Ctrl-C): instances, key pairs, for the users of creds:create.
func (r *Runner) APIServe(ctx context.Context, envName string) error {
	var credsDir string
	var admins []string
	if err := r.withEnv(ctx, envName, func(s *session) error {
		credsDir, admins = filepath.Join(s.Dir, "creds"), s.Env.API.Admins
		return nil
	}); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	admin := func(user string) bool { return slices.Contains(admins, user) }
	b := &ec2backend.Backend{Envs: sess.EC2Envs(r.Options, envName), Admin: admin}
	b.Launch = func(ids []string) { // pending at once, as EC2 answers; booted in the background
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cc := context.WithTimeout(lctx, launchTimeout)
			defer cc()
			if err := r.launchInstances(c, envName, ids); err != nil {
				fmt.Fprintf(r.Err, "%s: %v\n", envName, err)
			}
		}()
	}
	ln, err := net.Listen("tcp", r.APIListen)
	if err != nil {
		return fmt.Errorf("api:serve %s: %w (BOOTED_API_LISTEN chooses another address)", envName, err)
	}
	// Launches an earlier api:serve left unfinished (it was killed) go on:
	// no instance stays pending for ever.
	pending, err := r.pendingInstances(ctx, envName)
	if err != nil {
		ln.Close()
		return err
	}
	if len(pending) > 0 {
		fmt.Fprintf(r.Out, "%s: resuming the launch of %s (left pending by an earlier api:serve)\n", envName, strings.Join(pending, ", "))
		b.Launch(pending)
	}
	logf := func(f string, a ...any) { fmt.Fprintf(r.Err, "api: "+f+"\n", a...) }
	srv := &apiserver.Server{EC2: b, REST: r.restBackend(envName), Secrets: ec2backend.Secrets{Store: creds.Store{Dir: credsDir}},
		Status: r.statusPage(envName), Admin: admin, Log: logf}
	fmt.Fprintf(r.Out, "%s: EC2 API on http://%s/, REST API on http://%s/api/v1/ (described at /openapi.json), status page at /status (creds:create %s USER makes a user; api.admins in the env file may use the inventory)\n", envName, ln.Addr(), ln.Addr(), envName)
	err = srv.Serve(ctx, ln)
	cancel() // launches in flight stop; their instances end failed or terminated
	wg.Wait()
	return err
}

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
		rc, err := st.Files(s.Env.Name, c, "http://"+r.APIListen, apiRegion)
		if err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "%s: access key %s for %s; `source %s` points the AWS CLI and boto3 at http://%s/; `curl -K %s http://%s/api/v1/instances` reaches the REST API\n",
			envName, c.AccessKey, user, rc, r.APIListen, strings.TrimSuffix(rc, ".rc")+".curlrc", r.APIListen)
		return nil
	})
}
