package session

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/jobs"
)

// The job kinds the session's own steps send (facts, the load
// balancers' access logs), and the conductor's alive check (DoJob).
var (
	factsJob = jobs.Define("facts", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (jobs.Host[map[string][]string], error) {
		return factsHost, nil
	})
	accessLogJob = jobs.Define("accesslog", true, func(w jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a accessLogArgs) (jobs.Host[accessLog], error) {
		return accessLogHost(a.At), nil
	})
)

// aliveJob is the job a conductor checks a host with (DoJob).
const aliveJob = "alive"
