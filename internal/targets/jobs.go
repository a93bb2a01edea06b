package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/inventory"
	"booted/internal/loadgen"
	"booted/internal/remote"
	"booted/internal/service"
)

// A job is a per-host step cut where the host's work ends: its host half
// runs on the host (here, or on a conductor of the host's site), its
// record half here, on the controller, with what the host half returned
// (the inventory is written only here). jobKinds is every host half a
// conductor does; halves joins the two for an operation.

// hostHalf is a job's work on its host; what it returns goes back to the
// controller in the job's result (as JSON).
type hostHalf[T any] func(ctx context.Context, c hostConn) (T, error)

// recordHalf records on the controller what a host half returned (out,
// and its error): it returns the host's note in the recap, and an error
// when the host failed or what it did cannot be recorded.
type recordHalf[T any] func(ctx context.Context, h inventory.Host, out T, err error) (note string, rerr error)

// hostMaker makes a job's host half from the job (its arguments), on a
// conductor.
type hostMaker func(s *session, ctx context.Context, js jetstream.JetStream, j conductor.Job) (hostHalf[any], error)

// jobKinds are the kinds of job a conductor does, by name ("alive" and
// the site provider's host.* aside: doJob).
var jobKinds = map[string]hostMaker{}

// jobKind is a kind of job, one value for both sides: the controller
// sends it (halves) with arguments A, and a conductor does it (jobKinds,
// by its name) with the host half made from them, whose outcome T comes
// back. Idempotent: a conductor that died in the middle may have it done
// again.
type jobKind[A, T any] struct {
	name       string
	idempotent bool
}

// kind registers a job kind whose host half is made by mk from the job
// and its arguments (A), and returns it.
func kind[A, T any](name string, idempotent bool, mk func(s *session, ctx context.Context, js jetstream.JetStream, j conductor.Job, a A) (hostHalf[T], error)) jobKind[A, T] {
	if _, dup := jobKinds[name]; dup {
		panic("job kind " + name + " registered twice")
	}
	jobKinds[name] = func(s *session, ctx context.Context, js jetstream.JetStream, j conductor.Job) (hostHalf[any], error) {
		var a A
		if len(j.Args) > 0 {
			if err := json.Unmarshal(j.Args, &a); err != nil {
				return nil, fmt.Errorf("%s job: %w", name, err)
			}
		}
		f, err := mk(s, ctx, js, j, a)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, c hostConn) (any, error) { return f(ctx, c) }, nil
	}
	return jobKind[A, T]{name: name, idempotent: idempotent}
}

// halves is the operation's step with k's job: see halves.
func (k jobKind[A, T]) halves(o opOptions, args A, host hostHalf[T], record recordHalf[T]) (opOptions, func(ctx context.Context, c hostConn) error) {
	return halves(o, k.name, args, k.idempotent, host, record)
}

// halves sets o's job (kind name, args; idempotent: a conductor that died
// in the middle may have it done again) and returns the operation's step
// here: the host half, then the record half. A site's host does the host
// half through its conductor, and its result is recorded as it comes.
func halves[T any](o opOptions, name string, args any, idempotent bool, host hostHalf[T], record recordHalf[T]) (opOptions, func(ctx context.Context, c hostConn) error) {
	a, _ := json.Marshal(args)
	o.job = &conductor.Job{Kind: name, Args: a, Idempotent: idempotent}
	o.conducted = func(ctx context.Context, h inventory.Host, cr conductor.Result, r *remote.Result) {
		var out T
		if len(cr.Data) > 0 {
			json.Unmarshal(cr.Data, &out)
		}
		herr := r.Err
		if herr == nil && r.Status != remote.OK {
			herr = fmt.Errorf("host %s: %s", h.Name, r.Status)
		}
		note, err := record(ctx, h, out, herr)
		if r.Status != remote.OK {
			return
		}
		if err != nil {
			r.Status, r.Err, r.Error, r.Note = remote.Failed, err, err.Error(), ""
			return
		}
		if note != "" {
			r.Note = note + " (conductor " + cr.Conductor + ")"
		}
	}
	return o, func(ctx context.Context, c hostConn) error {
		out, err := host(ctx, c)
		note, err := record(ctx, c.Host(), out, err)
		if err == nil && note != "" {
			c.Note(note)
		}
		return err
	}
}

// The job kinds.
var (
	runJob = kind("run", false, func(s *session, _ context.Context, _ jetstream.JetStream, j conductor.Job, _ struct{}) (hostHalf[any], error) {
		return func(ctx context.Context, c hostConn) (any, error) { return nil, c.Run(ctx, j.Cmd) }, nil
	})
	deployJob = kind("deploy", true, func(s *session, ctx context.Context, js jetstream.JetStream, _ conductor.Job, a deployArgs) (hostHalf[deployOutcome], error) {
		if !sha256Hex.MatchString(a.SHA256) {
			return nil, fmt.Errorf("deploy job: sha256 %q is not 64 hex digits", a.SHA256)
		}
		def, err := s.loadService(a.Service)
		if err != nil {
			return nil, err
		}
		art := &service.Artifact{Service: a.Service, Version: a.Version, Commit: a.Commit, SHA256: a.SHA256,
			Path: filepath.Join(s.artifacts(), "conducted", a.SHA256, a.Service)}
		if err := conductor.GetArtifact(ctx, js, a.Object, art.Path, a.SHA256); err != nil {
			return nil, err
		}
		return s.deployHost(def, art), nil
	})
	factsJob = kind("facts", true, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (hostHalf[map[string][]string], error) {
		return factsHost, nil
	})
	lbJob = kind("lb", true, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a lbArgs) (hostHalf[string], error) {
		return lbApplyHost(a.Conf), nil
	})
	lbStopJob = kind("lbstop", true, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (hostHalf[struct{}], error) {
		return lbStopHost, nil
	})
	accessLogJob = kind("accesslog", true, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a accessLogArgs) (hostHalf[accessLog], error) {
		return accessLogHost(a.At), nil
	})
	loadJob = kind("load", true, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, o loadgen.Options) (hostHalf[loadRun], error) {
		return loadHost(o), nil
	})
	putJob = kind("put", true, func(s *session, ctx context.Context, js jetstream.JetStream, _ conductor.Job, a putArgs) (hostHalf[int64], error) {
		if !sha256Hex.MatchString(a.SHA256) {
			return nil, fmt.Errorf("put job: sha256 %q is not 64 hex digits", a.SHA256)
		}
		a.Mode &= os.ModePerm // permissions only, no set-id or other bits
		local := filepath.Join(s.artifacts(), "conducted", "files", a.SHA256, a.Mode.String())
		if err := conductor.GetArtifact(ctx, js, a.Object, local, a.SHA256); err != nil {
			return nil, err
		}
		if err := os.Chmod(local, a.Mode); err != nil {
			return nil, err
		}
		return putHost(local, a.Dst), nil
	})
	getJob = kind("get", true, func(s *session, _ context.Context, js jetstream.JetStream, j conductor.Job, a getArgs) (hostHalf[fetched], error) {
		dir := filepath.Join(s.artifacts(), "conducted", "get")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		return getHost(dir, a.Src, func(ctx context.Context, local, sum string) (string, error) {
			return j.ID, conductor.PutFile(ctx, js, j.Env, j.Site, j.ID, local, sum)
		}), nil
	})
	routesJob = kind("routes", true, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, _ struct{}) (hostHalf[[]string], error) {
		return routesHost, nil
	})
	statusJob = svcKind("status", true, func(s *session, def *service.Def, _ serviceArgs) hostHalf[service.State] {
		return statusHost(def)
	})
	checksJob = svcKind("checks", true, func(s *session, def *service.Def, _ serviceArgs) hostHalf[[]checkWire] {
		return s.checksHost(def)
	})
	startJob = svcKind("start", true, func(s *session, def *service.Def, a serviceArgs) hostHalf[service.State] {
		return s.startHost(def, a.Restart)
	})
	stopJob = svcKind("stop", true, func(s *session, def *service.Def, _ serviceArgs) hostHalf[int] {
		return stopHost(def)
	})
	rollbackJob = svcKind("rollback", false, func(s *session, def *service.Def, _ serviceArgs) hostHalf[rollbackOutcome] {
		return s.rollbackHost(def)
	})
	healthJob = svcKind("health", true, func(s *session, def *service.Def, a serviceArgs) hostHalf[struct{}] {
		return func(ctx context.Context, c hostConn) (struct{}, error) {
			return struct{}{}, s.healthy(ctx, def, c.Host(), a.Within)
		}
	})
	logsJob = svcKind("logs", true, func(s *session, def *service.Def, a serviceArgs) hostHalf[struct{}] {
		return logsHost(def, a.Follow)
	})
)

// svcKind is a kind of job on a service of the host's (serviceArgs).
func svcKind[T any](name string, idempotent bool, mk func(s *session, def *service.Def, a serviceArgs) hostHalf[T]) jobKind[serviceArgs, T] {
	return kind(name, idempotent, func(s *session, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a serviceArgs) (hostHalf[T], error) {
		def, err := s.loadService(a.Service)
		if err != nil {
			return nil, err
		}
		return mk(s, def, a), nil
	})
}
