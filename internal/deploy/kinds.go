package deploy

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/fleet"
	"booted/internal/jobs"
	"booted/internal/loadgen"
	"booted/internal/service"
)

// The job kinds.
var (
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
	lbJob = jobs.Define("lb", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a lbArgs) (jobs.Host[string], error) {
		return lbApplyHost(a.Conf), nil
	})
	lbStopJob = jobs.Define("lbstop", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (jobs.Host[struct{}], error) {
		return lbStopHost, nil
	})
	loadJob = jobs.Define("load", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, o loadgen.Options) (jobs.Host[loadRun], error) {
		return loadHost(o), nil
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
		return func(ctx context.Context, c fleet.Conn) (struct{}, error) {
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
