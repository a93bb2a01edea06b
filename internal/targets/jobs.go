package targets

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/jobs"
	"booted/internal/loadgen"
	"booted/internal/service"
)

// The job kinds.
var (
	runJob = jobs.Define("run", false, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, j conductor.Job, _ struct{}) (jobs.Host[any], error) {
		return func(ctx context.Context, c hostConn) (any, error) { return nil, c.Run(ctx, j.Cmd) }, nil
	})
	deployJob = jobs.Define("deploy", true, func(w jobs.Worker, ctx context.Context, js jetstream.JetStream, _ conductor.Job, a deployArgs) (jobs.Host[deployOutcome], error) {
		if !jobs.SHA256Hex.MatchString(a.SHA256) {
			return nil, fmt.Errorf("deploy job: sha256 %q is not 64 hex digits", a.SHA256)
		}
		def, err := w.LoadService(a.Service)
		if err != nil {
			return nil, err
		}
		art := &service.Artifact{Service: a.Service, Version: a.Version, Commit: a.Commit, SHA256: a.SHA256,
			Path: filepath.Join(w.Artifacts(), "conducted", a.SHA256, a.Service)}
		if err := conductor.GetArtifact(ctx, js, a.Object, art.Path, a.SHA256); err != nil {
			return nil, err
		}
		return deployHost(w, def, art), nil
	})
	factsJob = jobs.Define("facts", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (jobs.Host[map[string][]string], error) {
		return factsHost, nil
	})
	lbJob = jobs.Define("lb", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a lbArgs) (jobs.Host[string], error) {
		return lbApplyHost(a.Conf), nil
	})
	lbStopJob = jobs.Define("lbstop", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (jobs.Host[struct{}], error) {
		return lbStopHost, nil
	})
	accessLogJob = jobs.Define("accesslog", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a accessLogArgs) (jobs.Host[accessLog], error) {
		return accessLogHost(a.At), nil
	})
	loadJob = jobs.Define("load", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, o loadgen.Options) (jobs.Host[loadRun], error) {
		return loadHost(o), nil
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
	routesJob = jobs.Define("routes", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (jobs.Host[[]string], error) {
		return routesHost, nil
	})
	statusJob = svcKind("status", true, func(w jobs.Worker, def *service.Def, _ serviceArgs) jobs.Host[service.State] {
		return statusHost(def)
	})
	checksJob = svcKind("checks", true, func(w jobs.Worker, def *service.Def, _ serviceArgs) jobs.Host[[]checkWire] {
		return checksHost(w, def)
	})
	startJob = svcKind("start", true, func(w jobs.Worker, def *service.Def, a serviceArgs) jobs.Host[service.State] {
		return startHost(w, def, a.Restart)
	})
	stopJob = svcKind("stop", true, func(w jobs.Worker, def *service.Def, _ serviceArgs) jobs.Host[int] {
		return stopHost(def)
	})
	rollbackJob = svcKind("rollback", false, func(w jobs.Worker, def *service.Def, _ serviceArgs) jobs.Host[rollbackOutcome] {
		return rollbackHost(w, def)
	})
	healthJob = svcKind("health", true, func(w jobs.Worker, def *service.Def, a serviceArgs) jobs.Host[struct{}] {
		return func(ctx context.Context, c hostConn) (struct{}, error) {
			return struct{}{}, healthCheck(ctx, w, def, c.Host(), a.Within)
		}
	})
	logsJob = svcKind("logs", true, func(w jobs.Worker, def *service.Def, a serviceArgs) jobs.Host[struct{}] {
		return logsHost(def, a.Follow)
	})
)

// svcKind is a kind of job on a service of the host's (serviceArgs).
func svcKind[T any](name string, idempotent bool, mk func(w jobs.Worker, def *service.Def, a serviceArgs) jobs.Host[T]) jobs.Kind[serviceArgs, T] {
	return jobs.Define(name, idempotent, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a serviceArgs) (jobs.Host[T], error) {
		def, err := w.LoadService(a.Service)
		if err != nil {
			return nil, err
		}
		return mk(w, def, a), nil
	})
}
