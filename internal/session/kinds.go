package session

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
)

// The job kinds the session's own steps send (a command, facts, the
// load balancers' access logs), and the conductor's alive check (DoJob).
var (
	// RunJob runs a shell command on a host (hosts:run).
	RunJob = jobs.Define("run", false, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, j conductor.Job, _ struct{}) (jobs.Host[any], error) {
		return func(ctx context.Context, c hostConn) (any, error) { return nil, c.Run(ctx, j.Cmd) }, nil
	})
	factsJob = jobs.Define("facts", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (jobs.Host[map[string][]string], error) {
		return factsHost, nil
	})
	accessLogJob = jobs.Define("accesslog", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a accessLogArgs) (jobs.Host[accessLog], error) {
		return accessLogHost(a.At), nil
	})
)

// aliveJob is the job a conductor checks a host with: ping and a login
// against the pinned key, the connection kept.
const aliveJob = "alive"

func init() {
	jobs.DefineDirect(aliveJob, func(ctx context.Context, w jobs.Worker, j conductor.Job) conductor.Result {
		h := inventory.Host{Env: j.Env, Name: j.Host.Name, Addr: j.Host.Addr, Port: j.Host.Port, HostKey: j.Host.HostKey}
		if err := w.Alive(ctx, []inventory.Host{h}, 1)[0]; err != nil {
			return conductor.Result{Status: string(remote.Failed), Error: err.Error()}
		}
		return conductor.Result{Status: string(remote.OK)}
	})
}
