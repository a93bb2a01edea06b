package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/fanout"
)

// Status is how one host's part of an operation ended.
type Status string

// Per-host statuses.
const (
	OK          Status = "ok"
	Failed      Status = "failed"
	Unreachable Status = "unreachable"
	Skipped     Status = "skipped"
)

// Result is one host's part of a multi-host operation.
type Result struct {
	Host     string        `json:"host"`
	Status   Status        `json:"status"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"seconds"`
	Error    string        `json:"error,omitempty"`
	// Stderr is the tail of what the host's commands wrote to stderr.
	Stderr string `json:"stderr,omitempty"`
	// Note is a short success message (a PID, "unchanged").
	Note string `json:"note,omitempty"`
	Err  error  `json:"-"`
}

// Session is one host's view during Each: its connection and output.
type Session struct {
	Target Target
	pool   *Pool
	// Stdout and Stderr receive the output of Run; Stderr's tail goes in
	// the Result.
	Stdout io.Writer
	Stderr io.Writer
	tail   *tailBuffer
	// Note, if set by the step, goes in the Result.
	Note string
}

// Client returns the host's (shared) connection.
func (s *Session) Client(ctx context.Context) (*ssh.Client, error) {
	return s.pool.Client(ctx, s.Target)
}

// Run runs a command on the host (see the package-level Run).
func (s *Session) Run(ctx context.Context, cmd string) error {
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	return Run(ctx, c, cmd, s.Stdout, s.Stderr)
}

// Output runs a command and returns its stdout.
func (s *Session) Output(ctx context.Context, cmd string) (string, error) {
	c, err := s.Client(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = Run(ctx, c, cmd, &b, s.Stderr)
	return b.String(), err
}

// Options control a fan-out.
type Options struct {
	// Parallel bounds how many hosts run at once; zero means
	// fanout.DefaultParallel.
	Parallel int
	// Timeout bounds each host's part; zero means none.
	Timeout time.Duration
	// Output, if set, gives each host's stdout and stderr writers (e.g.
	// prefixing lines with the host name); nil discards them.
	Output func(host string) (stdout, stderr io.Writer)
	// OnStart and OnDone, if set, are told as hosts start and finish.
	OnStart func(host string)
	OnDone  func(r Result)
}

// Each runs step on every target, at most opt.Parallel at once, each with
// its own timeout, and returns one result per target in the targets' order.
// It goes on past failing hosts. Hosts not started when ctx ends are skipped.
func (p *Pool) Each(ctx context.Context, targets []Target, opt Options, step func(ctx context.Context, s *Session) error) []Result {
	results := make([]Result, len(targets))
	fanout.Each(ctx, len(targets), opt.Parallel, func(ctx context.Context, i int) {
		results[i] = p.one(ctx, targets[i], opt, step)
	}, func(i int) {
		results[i] = Result{Host: targets[i].Name, Status: Skipped, Error: "not started: " + ctx.Err().Error(), Err: ctx.Err()}
		if opt.OnDone != nil {
			opt.OnDone(results[i])
		}
	})
	return results
}

func (p *Pool) one(ctx context.Context, t Target, opt Options, step func(ctx context.Context, s *Session) error) (r Result) {
	if opt.OnStart != nil {
		opt.OnStart(t.Name)
	}
	start := time.Now()
	tail := &tailBuffer{max: 4096}
	s := &Session{Target: t, pool: p, tail: tail, Stdout: io.Discard, Stderr: tail}
	if opt.Output != nil {
		out, errw := opt.Output(t.Name)
		s.Stdout, s.Stderr = out, io.MultiWriter(errw, tail)
	}
	hctx := ctx
	if opt.Timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, opt.Timeout)
		defer cancel()
	}
	defer func() {
		if x := recover(); x != nil {
			r = Result{Host: t.Name, Status: Failed, Err: fmt.Errorf("panic: %v", x)}
		}
		r.Duration = time.Since(start)
		r.Seconds = r.Duration.Round(time.Millisecond).Seconds()
		if r.Err != nil {
			r.Error = r.Err.Error()
		}
		if opt.OnDone != nil {
			opt.OnDone(r)
		}
	}()
	p.hold(t.Name)
	defer p.release(t.Name)
	p.check(hctx, t)
	err := step(hctx, s)
	r = Result{Host: t.Name, Status: OK, Note: s.Note, Stderr: tail.Tail(5)}
	switch {
	case err == nil:
		r.Stderr = ""
	case errors.Is(err, ErrUnreachable):
		r.Status, r.Err = Unreachable, err
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		r.Status, r.Err = Failed, fmt.Errorf("host %s: timed out after %v", t.Name, opt.Timeout)
	default:
		r.Status, r.Err = Failed, err
	}
	if r.Status == Failed && ctx.Err() != nil {
		r.Err = fmt.Errorf("cancelled: %w", err)
	}
	return r
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// Tail returns the last n lines.
func (t *tailBuffer) Tail(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// Err joins the errors of the hosts that did not succeed, each wrapped
// with its host's name (and the tail of its stderr), so that errors.Is
// sees through to the cause; nil if all succeeded.
func Err(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Status == OK {
			continue
		}
		err := r.Err
		if err == nil {
			err = errors.New(r.Error)
		}
		if r.Stderr != "" {
			err = fmt.Errorf("%w: %s", err, strings.ReplaceAll(r.Stderr, "\n", " | "))
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.Host, err))
	}
	return errors.Join(errs...)
}
