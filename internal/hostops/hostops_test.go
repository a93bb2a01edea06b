package hostops_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/config"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/remote"
)

// Hosts w1, w2 (workers), lb1 (loadbalancers), w3 terminated, w4 without
// an address yet.
func runner(t *testing.T) (*hostops.Runner, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	ctx := context.Background()
	st, err := inventory.Open(ctx, filepath.Join(t.TempDir(), "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(ctx, func(tx *inventory.Tx) error {
		for _, h := range []struct{ name, role, addr string }{{"w1", "workers", "10.0.0.1"}, {"w2", "workers", "10.0.0.2"}, {"lb1", "loadbalancers", "10.0.0.9"}, {"w3", "workers", "10.0.0.3"}, {"w4", "workers", ""}} {
			if err := tx.Modify("e", h.name, func(x *inventory.Host) error { x.Role, x.Addr = h.role, h.addr; return nil }); err != nil {
				return err
			}
		}
		return tx.Advance("e", "w3", inventory.Terminated, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	return &hostops.Runner{Env: &config.Env{Name: "e"}, Store: st, Parallel: 4, Out: &out, Err: &errw}, &out, &errw
}

func names(hs []inventory.Host) string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return strings.Join(out, ",")
}

func TestSelectAndLimit(t *testing.T) {
	ctx := context.Background()
	r, _, _ := runner(t)
	all, err := r.Select(ctx, "", nil)
	if err != nil || names(all) != "lb1,w1,w2" {
		t.Fatalf("select: %s %v, want what has an address and is not terminated", names(all), err)
	}
	if ws, _ := r.Select(ctx, "workers", func(h inventory.Host) bool { return h.Name != "w2" }); names(ws) != "w1" {
		t.Errorf("workers but w2: %s", names(ws))
	}
	r.Limit = []string{"w*"}
	if hs, err := r.Limited(all); err != nil || names(hs) != "w1,w2" {
		t.Errorf("BOOTED_LIMIT=w*: %s %v", names(hs), err)
	}
	r.Limit = []string{"loadbalancers"}
	if hs, err := r.Limited(all); err != nil || names(hs) != "lb1" {
		t.Errorf("BOOTED_LIMIT=loadbalancers (a role): %s %v", names(hs), err)
	}
	r.Limit = []string{"db*"}
	if _, err := r.Limited(all); err == nil || !strings.Contains(err.Error(), "BOOTED_LIMIT=db* matches none of these hosts of e: lb1, w1, w2") {
		t.Errorf("a limit that keeps none: %v", err)
	}
}

// An operation: a recap, the hosts that did not succeed named in the
// error (failed or only unreachable) and kept, so that BOOTED_RETRY=failed
// runs it on them alone.
func TestRun_RecapAndRetry(t *testing.T) {
	ctx := context.Background()
	r, out, _ := runner(t)
	hosts, _ := r.Select(ctx, "", nil)
	var ran []string
	each := func(status map[string]remote.Status) hostops.Each {
		return func(_ context.Context, hs []inventory.Host, opt remote.Options) []remote.Result {
			var res []remote.Result
			for _, h := range hs {
				ran = append(ran, h.Name)
				st := status[h.Name]
				if st == "" {
					st = remote.OK
				}
				r := remote.Result{Host: h.Name, Status: st}
				if st != remote.OK {
					r.Err = errors.New("host " + h.Name + ": " + string(st))
					r.Error = r.Err.Error()
				}
				res = append(res, r)
			}
			return res
		}
	}
	_, err := r.Run(ctx, "hosts:run e", hosts, hostops.Show{}, each(map[string]remote.Status{"w2": remote.Unreachable}))
	var he *outcome.HostsError
	if !errors.As(err, &he) || he.Failed || strings.Join(he.Hosts, ",") != "w2" || outcome.ExitCode(err) != 3 {
		t.Fatalf("one unreachable: %v (%+v), want a HostsError naming w2, exit 3", err, he)
	}
	if !strings.Contains(out.String(), "recap hosts:run e: 2 ok, 0 failed, 1 unreachable") {
		t.Errorf("recap:\n%s", out)
	}
	r.RetryFailed = true
	ran = nil
	if _, err := r.Run(ctx, "hosts:run e", hosts, hostops.Show{}, each(map[string]remote.Status{"w2": remote.Failed})); outcome.ExitCode(err) != 1 || strings.Join(ran, ",") != "w2" {
		t.Errorf("retry of the failed: ran %v, %v (exit %d), want w2 alone, failed (exit 1)", ran, err, outcome.ExitCode(err))
	}
	ran = nil
	if _, err := r.Run(ctx, "hosts:run e", hosts, hostops.Show{}, each(nil)); err != nil || strings.Join(ran, ",") != "w2" {
		t.Errorf("retry again: ran %v %v", ran, err)
	}
	out.Reset()
	ran = nil
	if _, err := r.Run(ctx, "hosts:run e", hosts, hostops.Show{}, each(nil)); err != nil || len(ran) != 0 || !strings.Contains(out.String(), "hosts:run e: no failed hosts to retry") {
		t.Errorf("nothing left to retry: ran %v %v\n%s", ran, err, out)
	}
}
