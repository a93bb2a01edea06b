package targets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"booted/internal/journal"
	"booted/internal/pgtest"
	"booted/internal/testutil"
)

// Two controllers (each its own inventory directory, one PostgreSQL
// inventory, one deploy key named in the env file): a rolling deploy run
// on the first is killed (kill -9) after its first host; the second
// controller's monitor daemon takes the operation over within 10 s and
// finishes it: every worker serves the new version, none was deployed
// twice (events), none was forgotten.
func TestRegion_KilledControllersDeployFinished(t *testing.T) {
	db := pgtest.URL(t)
	f := newFixture(t, testutil.Workers(3, 3)+testutil.Hello+testutil.EnvFile(`ssh:
  key: KEY
monitor:
  interval: 1s
  sla: {p95: 10s, error_rate: 0.5}
  unhealthy_intervals: 1000
  listen: `+testutil.FreePort(t)+"\n"))
	envFile := filepath.Join(f.proj.Root, "envs", f.proj.Env+".yaml")
	y, _ := os.ReadFile(envFile)
	os.WriteFile(envFile, []byte(strings.Replace(string(y), "KEY", filepath.Join(f.proj.Root, "deploy_key"), 1)), 0o644)
	f.proj.GitInit(t, "v1", "v2")
	f.r.Database = db
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.proj.Env))

	// The second controller: its own inventory directory, the monitor daemon.
	second := newRunner(f.proj.Root, filepath.Join(t.TempDir(), "inventory"), f.out, testWriter{t})
	second.Database = db
	dctx, stopDaemon := context.WithCancel(ctx)
	daemon := make(chan error, 1)
	go func() { daemon <- second.MonitorRun(dctx, f.proj.Env) }()
	defer func() {
		stopDaemon()
		if err := <-daemon; err != nil {
			t.Errorf("the second controller's monitor:run: %v", err)
		}
	}()

	// The first controller's service:deploy, in a process of its own.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOOTED_TEST_DEPLOY="+f.proj.Env+"|hello|v2", "BOOTED_ROOT="+f.proj.Root,
		"BOOTED_INVENTORY="+f.proj.Inventory, "BOOTED_DATABASE="+db)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone with the test, however it ends
	log := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if n := deployedEvents(t, f.r, f.proj.Env, "v2"); len(n) >= 1 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("no host deployed by the first controller within 2 minutes:\n%s", log)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed := time.Now()
	before := deployedEvents(t, f.r, f.proj.Env, "v2")
	t.Logf("the first controller killed after deploying %v", before)
	if len(before) == 3 {
		t.Fatalf("the first controller finished the deploy before the kill: nothing left to take over\n%s", log)
	}

	// The second one takes it over and finishes it.
	var resumedAt time.Time
	for pending := true; pending; time.Sleep(100 * time.Millisecond) {
		f.must(t, second.withEnv(ctx, f.proj.Env, func(s *session) (err error) {
			if resumedAt.IsZero() {
				evs, err := s.Store.EventsOfKind(ctx, f.proj.Env, "operation-resumed", 1)
				if err != nil {
					return err
				}
				if len(evs) == 1 {
					resumedAt = evs[0].Time
				}
			}
			_, pending, err = journal.Pending(ctx, s.Store, f.proj.Env)
			return err
		}))
		if time.Since(killed) > 2*time.Minute {
			t.Fatalf("the deploy is still in flight 2 minutes after the kill:\n%s", f.out)
		}
	}
	if resumedAt.IsZero() || resumedAt.Sub(killed) > 10*time.Second {
		t.Errorf("taken over %v after the kill (at %v), want within 10 s", resumedAt.Sub(killed), resumedAt)
	}
	t.Logf("taken over %v after the kill; done %v after it", resumedAt.Sub(killed).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	after := deployedEvents(t, f.r, f.proj.Env, "v2")
	hosts := f.hosts(t)
	for _, w := range []string{"w1", "w2", "w3"} {
		if after[w] > 1 {
			t.Errorf("%s deployed %d times", w, after[w])
		}
		if before[w] == 1 && after[w] != 1 {
			t.Errorf("%s, deployed before the kill, was deployed again", w)
		}
		if got := httpGet(t, "http://"+hosts[w].IP+":8080/version"); hosts[w].State != "serving" || got != "v2\n" {
			t.Errorf("%s is %s and answers %q, want serving v2", w, hosts[w].State, got)
		}
	}
}
