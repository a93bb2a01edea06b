package targets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"booted/internal/inventory"
	"booted/internal/remote"
	"booted/internal/service"
)

// serviceHosts returns the hosts whose role runs svc (only role, if given).
func (s *session) serviceHosts(ctx context.Context, svc, role string) ([]inventory.Host, error) {
	roles := map[string]bool{}
	for name, r := range s.env.Roles {
		if r.Service == svc && (role == "" || role == name) {
			roles[name] = true
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("%s: no role of %s runs %s (set roles.ROLE.service in the env file)", s.env.Path, s.env.Name, svc)
	}
	return s.selectHosts(ctx, "", func(h inventory.Host) bool { return roles[h.Role] })
}

// artifacts is where builds (and mirrors of services' repositories) are kept.
func (s *session) artifacts() string { return filepath.Join(s.r.Inventory, "artifacts") }

func (s *session) loadService(svc string) (*service.Def, error) {
	return service.Load(s.r.Root, svc)
}

// build builds (or takes from the cache) version of def.
func (s *session) buildArtifact(ctx context.Context, def *service.Def, version string) (*service.Artifact, error) {
	a, err := def.Build(ctx, s.r.Root, s.artifacts(), version, io.Discard)
	if err != nil {
		return nil, err
	}
	if !s.r.JSON {
		fmt.Fprintf(s.r.Out, "%s %s: commit %s, sha256 %s\n", def.Name, version, a.Commit[:12], a.SHA256[:16])
	}
	return a, nil
}

// withService opens ENV of sel ("ENV" or "ENV/ROLE"), loads SVC and the
// hosts that run it, and calls fn.
func (r *Runner) withService(ctx context.Context, sel, svc string, fn func(s *session, def *service.Def, hosts []inventory.Host) error) error {
	envName, role := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		def, err := s.loadService(svc)
		if err != nil {
			return err
		}
		hosts, err := s.serviceHosts(ctx, svc, role)
		if err != nil {
			return err
		}
		return fn(s, def, hosts)
	})
}

// ServiceDeploy builds VERSION of SVC once, puts it on every host of ENV that
// runs SVC (ENV/ROLE for one role) that does not have it yet, switches them
// to it and (re)starts it; hosts that pass the health check are serving.
func (r *Runner) ServiceDeploy(ctx context.Context, sel, svc, version string) error {
	return r.withService(ctx, sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.deploy(ctx, def, version, hosts)
	})
}

func (s *session) deploy(ctx context.Context, def *service.Def, version string, hosts []inventory.Host) error {
	if _, err := def.Resolve(ctx, s.r.Root, s.artifacts(), version); err != nil {
		return err // before anything is touched
	}
	title := "service:deploy " + def.Name
	hosts, err := s.retryFilter(ctx, title, hosts)
	if err != nil || len(hosts) == 0 {
		return err
	}
	a, err := s.buildArtifact(ctx, def, version)
	if err != nil {
		return err
	}
	batches, err := batches(hosts, s.r.Batch)
	if err != nil {
		return err
	}
	var unreachable []string
	for i, batch := range batches {
		t := title
		if len(batches) > 1 {
			t = fmt.Sprintf("%s %s (batch %d of %d)", title, a.Version, i+1, len(batches))
		}
		// Out of the load balancer first; the update waits for in-flight requests.
		if err := s.drain(ctx, batch); err != nil {
			return err
		}
		results, opErr := s.op(ctx, t, batch, opOptions{live: true, keepList: true}, func(ctx context.Context, rs *remote.Session, h inventory.Host) error {
			uploaded, err := def.Deploy(ctx, rs, a)
			if err != nil {
				return err
			}
			st, err := s.startChecked(ctx, def, rs, h)
			if err != nil {
				return err
			}
			what := "unchanged"
			if uploaded {
				what = "uploaded"
			}
			rs.Note = fmt.Sprintf("%s %s, %s, pid %d", def.Name, a.Version, what, st.PID)
			return nil
		})
		var failed []inventory.Host
		byName := map[string]inventory.Host{}
		for _, h := range batch {
			byName[h.Name] = h
		}
		for _, r := range results {
			switch r.Status {
			case remote.Unreachable, remote.Skipped:
				unreachable = append(unreachable, r.Host) // nothing changed there
			case remote.Failed:
				failed = append(failed, byName[r.Host])
			}
		}
		if len(failed) > 0 {
			rbErr := s.rollback(ctx, def, failed, "roll back after a failed deploy")
			lbErr := s.updateLB(ctx)
			var names []string
			for _, h := range failed {
				names = append(names, h.Name)
			}
			s.saveFailed(ctx, title, append(names, unreachable...))
			return errors.Join(fmt.Errorf("%s %s stopped at batch %d of %d: failed on %s, rolled back to the previous release: %w", title, a.Version, i+1, len(batches), strings.Join(names, ", "), opErr), rbErr, lbErr)
		}
		if err := s.updateLB(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := s.saveFailed(ctx, title, unreachable); err != nil {
		return err
	}
	if len(unreachable) > 0 {
		return fmt.Errorf("%s %s failed on %d of %d hosts: %s unreachable (BOOTED_RETRY=failed runs it again on just those)", title, a.Version, len(unreachable), len(hosts), strings.Join(unreachable, ", "))
	}
	return nil
}

// drain takes the serving hosts among hosts out of the load balancers.
func (s *session) drain(ctx context.Context, hosts []inventory.Host) error {
	n := 0
	for _, h := range hosts {
		if h.State == inventory.Serving {
			if err := s.walk(ctx, h.Name, inventory.Draining); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return s.updateLB(ctx)
}

// startChecked (re)starts the service on a host and runs the health check
// and the service's checks against it before it is put back (serving).
func (s *session) startChecked(ctx context.Context, def *service.Def, rs *remote.Session, h inventory.Host) (service.State, error) {
	st, err := s.startOne(ctx, def, rs, h, false)
	if err != nil {
		return st, err
	}
	for _, c := range def.RunChecks(ctx, h.Name, h.Addr) {
		if c.Err != nil {
			s.walk(context.WithoutCancel(ctx), h.Name, inventory.Draining)
			return st, fmt.Errorf("host %s: check %q failed: %w", h.Name, c.Check.Name, c.Err)
		}
	}
	return st, nil
}

// rollback switches hosts back to their previous release and restarts it.
func (s *session) rollback(ctx context.Context, def *service.Def, hosts []inventory.Host, title string) error {
	_, err := s.op(context.WithoutCancel(ctx), title, hosts, opOptions{live: true, keepList: true}, func(ctx context.Context, rs *remote.Session, h inventory.Host) error {
		v, err := def.Rollback(ctx, rs)
		if err != nil {
			return err
		}
		st, err := s.startOne(ctx, def, rs, h, true)
		if err != nil {
			return err
		}
		rs.Note = fmt.Sprintf("back on %s, pid %d", v, st.PID)
		return nil
	})
	return err
}

// ServiceRollback switches every host of ENV running SVC back to its
// previous release, one batch at a time (BOOTED_BATCH), each out of the load
// balancer while it restarts.
func (r *Runner) ServiceRollback(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		bs, err := batches(hosts, s.r.Batch)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if err := s.drain(ctx, b); err != nil {
				return err
			}
			err := s.rollback(ctx, def, b, "service:rollback "+def.Name)
			if lerr := s.updateLB(ctx); err == nil {
				err = lerr
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// batches splits hosts by BOOTED_BATCH: a count ("2"), a percentage ("25%")
// or "all"; empty means one host at a time.
func batches(hosts []inventory.Host, spec string) ([][]inventory.Host, error) {
	size := 1
	switch {
	case spec == "" || spec == "1":
	case spec == "all":
		size = len(hosts)
	case strings.HasSuffix(spec, "%"):
		p, err := strconv.Atoi(strings.TrimSuffix(spec, "%"))
		if err != nil || p < 1 || p > 100 {
			return nil, fmt.Errorf("BOOTED_BATCH=%s: use a count, a percentage from 1%% to 100%%, or all", spec)
		}
		size = max(1, len(hosts)*p/100)
	default:
		n, err := strconv.Atoi(spec)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("BOOTED_BATCH=%s: use a count, a percentage from 1%% to 100%%, or all", spec)
		}
		size = n
	}
	var out [][]inventory.Host
	for len(hosts) > 0 {
		n := min(size, len(hosts))
		out = append(out, hosts[:n])
		hosts = hosts[n:]
	}
	return out, nil
}

// startOne starts the service on one host, waits for its health check and
// marks the host serving.
func (s *session) startOne(ctx context.Context, def *service.Def, rs *remote.Session, h inventory.Host, restart bool) (service.State, error) {
	st, err := def.Start(ctx, rs, restart)
	if err != nil {
		return st, err
	}
	if err := def.WaitHealthy(ctx, h.Addr); err != nil {
		return st, fmt.Errorf("host %s: %s %s started (pid %d) but %w", h.Name, def.Name, st.Version, st.PID, err)
	}
	return st, s.walk(ctx, h.Name, inventory.Ready, inventory.Serving)
}

// walk moves a host through the given states, skipping those it is past.
func (s *session) walk(ctx context.Context, name string, path ...inventory.State) error {
	return s.store.Update(ctx, func(tx *inventory.Tx) error {
		h, err := tx.Host(s.env.Name, name)
		if err != nil {
			return err
		}
		for i, st := range path {
			if h.State == st || (i < len(path)-1 && !inventory.CanMove(h.State, st)) {
				continue // already there, or past this step
			}
			if err := tx.Modify(s.env.Name, name, func(h *inventory.Host) error { h.State, h.Reason = st, ""; return nil }); err != nil {
				return err
			}
			h.State = st
		}
		return nil
	})
}

// ServiceStart (re)starts SVC on every host of ENV that runs it.
func (r *Runner) ServiceStart(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		_, err := s.op(ctx, "service:start "+svc, hosts, opOptions{live: true}, func(ctx context.Context, rs *remote.Session, h inventory.Host) error {
			st, err := s.startOne(ctx, def, rs, h, true)
			if err == nil {
				rs.Note = fmt.Sprintf("running %s, pid %d", st.Version, st.PID)
			}
			return err
		})
		return errors.Join(err, s.updateLB(ctx))
	})
}

// ServiceStop stops SVC on every host of ENV that runs it.
func (r *Runner) ServiceStop(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.stopService(ctx, def, hosts)
	})
}

func (s *session) stopService(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	if err := s.drain(ctx, hosts); err != nil {
		return err
	}
	_, err := s.op(ctx, "service:stop "+def.Name, hosts, opOptions{live: true}, func(ctx context.Context, rs *remote.Session, h inventory.Host) error {
		pid, err := def.Stop(ctx, rs)
		if err != nil {
			return err
		}
		rs.Note = "not running"
		if pid != 0 {
			rs.Note = fmt.Sprintf("stopped (was pid %d)", pid)
		}
		return s.walk(ctx, h.Name, inventory.Draining, inventory.Ready)
	})
	return err
}

// ServiceTest runs the checks of SVC's service.yaml against every host of
// ENV that runs it; it fails if any check fails, and writes JUnit XML to
// BOOTED_JUNIT when set.
func (r *Runner) ServiceTest(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.test(ctx, def, hosts)
	})
}

func (s *session) test(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	var mu sync.Mutex
	results := map[string][]service.CheckResult{}
	hostErrs := map[string]error{}
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	_, err := s.op(ctx, "service:test "+def.Name, hosts, opOptions{live: true}, func(ctx context.Context, rs *remote.Session, h inventory.Host) error {
		rr := def.RunChecks(ctx, h.Name, h.Addr)
		mu.Lock()
		results[h.Name] = rr
		mu.Unlock()
		var errs []error
		for _, c := range rr {
			if c.Err != nil {
				errs = append(errs, fmt.Errorf("check %q: %w", c.Check.Name, c.Err))
			}
		}
		rs.Note = fmt.Sprintf("%d/%d checks passed", len(rr)-len(errs), len(rr))
		if len(errs) > 0 {
			err := fmt.Errorf("host %s: %d of %d checks failed: %w", h.Name, len(errs), len(rr), errors.Join(errs...))
			mu.Lock()
			hostErrs[h.Name] = err
			mu.Unlock()
			return err
		}
		return nil
	})
	if s.r.JUnit != "" {
		if jerr := service.WriteJUnit(s.r.JUnit, def.Name, results, hostErrs, names); jerr != nil {
			return errors.Join(err, fmt.Errorf("write JUnit %s: %w", s.r.JUnit, jerr))
		}
	}
	return err
}
