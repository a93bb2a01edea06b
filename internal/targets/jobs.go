package targets

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/jobs"
)

// The job kinds.
var (
	runJob = jobs.Define("run", false, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, j conductor.Job, _ struct{}) (jobs.Host[any], error) {
		return func(ctx context.Context, c hostConn) (any, error) { return nil, c.Run(ctx, j.Cmd) }, nil
	})
	putJob = jobs.Define("put", true, func(w jobs.Worker, ctx context.Context, js jetstream.JetStream, _ conductor.Job, a putArgs) (jobs.Host[int64], error) {
		if !jobs.SHA256Hex.MatchString(a.SHA256) {
			return nil, fmt.Errorf("put job: sha256 %q is not 64 hex digits", a.SHA256)
		}
		a.Mode &= os.ModePerm // permissions only, no set-id or other bits
		local := filepath.Join(w.Artifacts(), "conducted", "files", a.SHA256, a.Mode.String())
		if err := conductor.GetArtifact(ctx, js, a.Object, local, a.SHA256); err != nil {
			return nil, err
		}
		if err := os.Chmod(local, a.Mode); err != nil {
			return nil, err
		}
		return putHost(local, a.Dst), nil
	})
	getJob = jobs.Define("get", true, func(w jobs.Worker, _ context.Context, js jetstream.JetStream, j conductor.Job, a getArgs) (jobs.Host[fetched], error) {
		dir := filepath.Join(w.Artifacts(), "conducted", "get")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		return getHost(dir, a.Src, func(ctx context.Context, local, sum string) (string, error) {
			return j.ID, conductor.PutFile(ctx, js, j.Env, j.Site, j.ID, local, sum)
		}), nil
	})
)
