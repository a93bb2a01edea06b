// Package rollout plans a rolling change over a set of hosts and carries
// the plan out through an Executor: the hosts in batches (BOOTED_BATCH),
// each batch taken out of the load balancer, changed, checked and put
// back; a batch with a failed host is rolled back where it was changed,
// and the rollout stops. Hosts that could not be reached are not changed
// and do not stop it, but are reported.
//
// The plan and the decision after each batch are pure functions; the
// Executor is what touches hosts (service deploys over SSH, the load
// balancer's nginx), so the rules are tested without any.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Size is how many hosts a batch takes: N of them, a percentage of all,
// or all at once.
type Size struct {
	N       int
	Percent int
	All     bool
}

// ParseBatch reads a BOOTED_BATCH value: a count ("2"), a percentage
// ("25%") or "all"; empty means one host at a time.
func ParseBatch(spec string) (Size, error) {
	bad := fmt.Errorf("BOOTED_BATCH=%s: use a count (2), a percentage from 1%% to 100%% (25%%), or all", spec)
	switch {
	case spec == "":
		return Size{N: 1}, nil
	case spec == "all":
		return Size{All: true}, nil
	case strings.HasSuffix(spec, "%"):
		p, err := strconv.Atoi(strings.TrimSuffix(spec, "%"))
		if err != nil || p < 1 || p > 100 {
			return Size{}, bad
		}
		return Size{Percent: p}, nil
	default:
		n, err := strconv.Atoi(spec)
		if err != nil || n < 1 {
			return Size{}, bad
		}
		return Size{N: n}, nil
	}
}

// of returns the batch size for n hosts (at least 1).
func (s Size) of(n int) int {
	switch {
	case s.All:
		return max(1, n)
	case s.Percent > 0:
		return max(1, n*s.Percent/100)
	default:
		return max(1, s.N)
	}
}

// Plan splits hosts into batches of the given size, in order.
func Plan(hosts []string, size Size) [][]string {
	var out [][]string
	n := size.of(len(hosts))
	for len(hosts) > 0 {
		k := min(n, len(hosts))
		out = append(out, hosts[:k:k])
		hosts = hosts[k:]
	}
	return out
}

// Status is how one host's change ended.
type Status int

// Per-host statuses.
const (
	OK Status = iota
	// Failed: the change or its checks failed on the host.
	Failed
	// Unreachable: the host could not be reached (or was not started):
	// nothing changed there.
	Unreachable
)

// Result is one host's part of a batch.
type Result struct {
	Status Status
	// Switched is whether the host's release was switched (so a rollback
	// has something to undo).
	Switched bool
}

// Decision is what to do after a batch.
type Decision struct {
	// RollBack are the failed hosts whose release was switched.
	RollBack []string
	// Failed are the hosts that failed (rolled back or not).
	Failed []string
	// Unreachable are the hosts left as they were.
	Unreachable []string
	// Stop ends the rollout after this batch.
	Stop bool
}

// After decides what follows batch, given each host's result (a host
// missing from results counts as unreachable).
func After(batch []string, results map[string]Result) Decision {
	var d Decision
	for _, h := range batch {
		r, ok := results[h]
		switch {
		case !ok || r.Status == Unreachable:
			d.Unreachable = append(d.Unreachable, h)
		case r.Status == Failed:
			d.Failed = append(d.Failed, h)
			if r.Switched {
				d.RollBack = append(d.RollBack, h)
			}
		}
	}
	d.Stop = len(d.Failed) > 0
	return d
}

// Executor carries a rollout out.
type Executor interface {
	// Drain takes the hosts out of the load balancers (those serving) and
	// waits for their requests to finish.
	Drain(ctx context.Context, hosts []string) error
	// Change changes, restarts and checks the hosts of one batch (title
	// names it for the progress display), returning each host's result.
	Change(ctx context.Context, title string, hosts []string) (map[string]Result, error)
	// Rollback puts the hosts back on their previous release.
	Rollback(ctx context.Context, hosts []string) error
	// UpdateLB points the load balancers at the hosts now serving.
	UpdateLB(ctx context.Context) error
}

// Report is how a rollout ended.
type Report struct {
	Batches int
	// StoppedAt is the 1-based batch the rollout stopped at (0: it did not).
	StoppedAt   int
	Failed      []string
	RolledBack  []string
	Unreachable []string
}

// ErrStopped is wrapped by Run's error when a batch failed and the rollout
// stopped.
var ErrStopped = errors.New("the rollout stopped")

// Run carries batches out with x, one after the other: drain, change,
// roll back what failed and stop, or put the batch back and go on. title
// names the rollout in batch titles.
func Run(ctx context.Context, title string, batches [][]string, x Executor) (Report, error) {
	rep := Report{Batches: len(batches)}
	for i, batch := range batches {
		t := title
		if len(batches) > 1 {
			t = fmt.Sprintf("%s (batch %d of %d)", title, i+1, len(batches))
		}
		if err := x.Drain(ctx, batch); err != nil {
			return rep, err
		}
		results, changeErr := x.Change(ctx, t, batch)
		d := After(batch, results)
		rep.Unreachable = append(rep.Unreachable, d.Unreachable...)
		if d.Stop {
			rep.StoppedAt, rep.Failed, rep.RolledBack = i+1, d.Failed, d.RollBack
			var rbErr error
			if len(d.RollBack) > 0 {
				rbErr = x.Rollback(context.WithoutCancel(ctx), d.RollBack)
			}
			lbErr := x.UpdateLB(context.WithoutCancel(ctx))
			what := "nothing was switched there"
			if len(d.RollBack) > 0 {
				what = "rolled back to the previous release on " + strings.Join(d.RollBack, ", ")
			}
			err := fmt.Errorf("%s stopped at batch %d of %d: failed on %s, %s: %w", title, i+1, len(batches), strings.Join(d.Failed, ", "), what, ErrStopped)
			return rep, errors.Join(err, changeErr, rbErr, lbErr)
		}
		if err := x.UpdateLB(ctx); err != nil {
			return rep, err
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
