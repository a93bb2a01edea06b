package targets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/envlock"
	"booted/internal/fanout"
	"booted/internal/files"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/journal"
	"booted/internal/lb"
	"booted/internal/pgtest"
	"booted/internal/provider"
	"booted/internal/provider/memory"
	"booted/internal/remote"
	"booted/internal/service"
	"booted/internal/testutil"
)

// fakeHost is what a fake host holds: the service's releases and what
// runs, and (a load balancer) what it routes to.
type fakeHost struct {
	releases          map[string]bool
	sums              map[string]string // version → checksum
	current, previous string
	running           string
	pid               int
	routes            []string
	lbRunning         bool
	memoryMB          int // its memory_mb fact (1024 unless a test says)
}

// fakeIO is hosts in memory: the targets' orchestration without SSH, HTTP
// or root. It logs what was done on which host, in order.
type fakeIO struct {
	mu    sync.Mutex
	hosts map[string]*fakeHost
	// down hosts are unreachable; badVersion fails its health check;
	// refuseLB makes load balancers refuse their configuration.
	down       map[string]bool
	badVersion string
	refuseLB   bool
	log        []string
	pid        int
}

func newFakeIO() *fakeIO { return &fakeIO{hosts: map[string]*fakeHost{}, down: map[string]bool{}} }

func (f *fakeIO) host(name string) *fakeHost {
	h := f.hosts[name]
	if h == nil {
		h = &fakeHost{releases: map[string]bool{}, sums: map[string]string{}}
		f.hosts[name] = h
	}
	return h
}

func (f *fakeIO) record(format string, args ...any) {
	f.log = append(f.log, fmt.Sprintf(format, args...))
}

// logged returns the log lines that start with prefix.
func (f *fakeIO) logged(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func (f *fakeIO) Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, step func(ctx context.Context, c fleet.Conn) error) []remote.Result {
	results := make([]remote.Result, len(hosts))
	fanout.Each(ctx, len(hosts), opt.Parallel, func(ctx context.Context, i int) {
		h := hosts[i]
		if opt.OnStart != nil {
			opt.OnStart(h.Name)
		}
		c := &fakeConn{f: f, h: h, out: io.Discard}
		if opt.Output != nil {
			c.out, _ = opt.Output(h.Name)
		}
		f.mu.Lock()
		down := f.down[h.Name]
		f.mu.Unlock()
		r := remote.Result{Host: h.Name, Status: remote.OK}
		if down {
			r.Status, r.Err = remote.Unreachable, fmt.Errorf("host %s: %w: no route to host", h.Name, remote.ErrUnreachable)
		} else if err := step(ctx, c); err != nil {
			r.Status, r.Err = remote.Failed, err
		}
		if r.Err != nil {
			r.Error = r.Err.Error()
		}
		r.Note = c.note
		results[i] = r
		if opt.OnDone != nil {
			opt.OnDone(r)
		}
	}, func(i int) {
		results[i] = remote.Result{Host: hosts[i].Name, Status: remote.Skipped, Error: "not started"}
	})
	return results
}

func (f *fakeIO) Alive(ctx context.Context, hosts []inventory.Host, parallel int) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]error, len(hosts))
	for i, h := range hosts {
		if f.down[h.Name] {
			out[i] = errors.New("no reply to ping within 1s")
		}
	}
	return out
}

func (f *fakeIO) healthy(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.host(name)
	switch {
	case f.down[name]:
		return errors.New("connection refused")
	case h.running == "":
		return errors.New("not running")
	case h.running == f.badVersion:
		return fmt.Errorf("health check: status 500 (running %s)", h.running)
	}
	return nil
}

func (f *fakeIO) WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error {
	return f.healthy(h.Name)
}

func (f *fakeIO) Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult {
	var out []service.CheckResult
	for _, c := range def.Checks {
		out = append(out, service.CheckResult{Check: c, Host: h.Name, Err: f.healthy(h.Name)})
	}
	return out
}

func (f *fakeIO) Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error) {
	if err := f.healthy(h.Name); err != nil {
		return "", err
	}
	if path == "/version" {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.host(h.Name).running, nil
	}
	return "ok", nil
}

type fakeConn struct {
	f    *fakeIO
	h    inventory.Host
	note string
	out  io.Writer
}

func (c *fakeConn) Host() inventory.Host { return c.h }
func (c *fakeConn) Note(msg string)      { c.note = msg }

func (c *fakeConn) Run(ctx context.Context, cmd string) error {
	c.f.mu.Lock()
	c.f.record("run %s %s", c.h.Name, cmd)
	c.f.mu.Unlock()
	fmt.Fprintf(c.out, "ran %s\n", cmd)
	return nil
}

func (c *fakeConn) Deploy(ctx context.Context, def *service.Def, a *service.Artifact) (bool, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	h := c.f.host(c.h.Name)
	c.f.record("deploy %s %s", c.h.Name, a.Version)
	uploaded := !h.releases[a.Version]
	h.releases[a.Version], h.sums[a.Version] = true, a.SHA256
	if h.current != a.Version {
		h.previous, h.current = h.current, a.Version
	}
	return uploaded, nil
}

func (c *fakeConn) Start(ctx context.Context, def *service.Def, restart bool) (service.State, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	h := c.f.host(c.h.Name)
	if h.current == "" {
		return service.State{}, fmt.Errorf("host %s: %s is not deployed", c.h.Name, def.Name)
	}
	if h.running != h.current || restart {
		c.f.pid++
		h.running, h.pid = h.current, c.f.pid
		c.f.record("start %s %s", c.h.Name, h.running)
	}
	return service.State{Running: true, PID: h.pid, Version: h.running}, nil
}

func (c *fakeConn) Stop(ctx context.Context, def *service.Def) (int, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	h := c.f.host(c.h.Name)
	c.f.record("stop-service %s", c.h.Name)
	pid := h.pid
	h.running, h.pid = "", 0
	return pid, nil
}

func (c *fakeConn) Put(ctx context.Context, p files.PutSpec) (int64, files.Placed, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.record("put %s %s %s", c.h.Name, p.Src.Path, p.Dst)
	return 1, files.Placed{SHA256: p.Src.SHA256}, nil
}

func (c *fakeConn) Get(ctx context.Context, src, dst string) (int64, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.record("get %s %s %s", c.h.Name, src, dst)
	return 1, nil
}

func (c *fakeConn) Facts(ctx context.Context) (map[string][]string, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	h := c.f.host(c.h.Name)
	c.f.record("facts %s", c.h.Name)
	mem := h.memoryMB
	if mem == 0 {
		mem = 1024
	}
	return map[string][]string{"cpus": {"2"}, "memory_mb": {strconv.Itoa(mem)}, "kernel": {"6.1.0-fake"}, "arch": {"x86_64"}, "distribution": {"debian"}}, nil
}

func (c *fakeConn) Status(ctx context.Context, def *service.Def) (service.State, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	h := c.f.host(c.h.Name)
	c.f.record("status %s", c.h.Name)
	if h.running == "" {
		return service.State{}, nil
	}
	return service.State{Running: true, PID: h.pid, Version: h.running, SHA256: h.sums[h.current]}, nil
}

func (c *fakeConn) Rollback(ctx context.Context, def *service.Def) (string, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	h := c.f.host(c.h.Name)
	c.f.record("rollback %s", c.h.Name)
	if h.previous == "" {
		return "", service.ErrNoPrevious
	}
	h.previous, h.current = h.current, h.previous
	return h.current, nil
}

var fakeServerRE = regexp.MustCompile(`(?m)^\s*server\s+(\S+)\s+max_fails`)

func (c *fakeConn) ApplyLB(ctx context.Context, conf []byte) (string, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.refuseLB {
		return "", fmt.Errorf("load balancer %s: %w", c.h.Name, lb.ErrRefused)
	}
	h := c.f.host(c.h.Name)
	var routes []string
	for _, m := range fakeServerRE.FindAllStringSubmatch(string(conf), -1) {
		routes = append(routes, m[1])
	}
	c.f.record("lb %s %s", c.h.Name, strings.Join(routes, " "))
	h.routes, h.lbRunning = routes, true
	return "reloaded", nil
}

func (c *fakeConn) StopLB(ctx context.Context) error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.record("stop-lb %s", c.h.Name)
	c.f.host(c.h.Name).lbRunning = false
	return nil
}

func (c *fakeConn) Routes(ctx context.Context) ([]string, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	return append([]string(nil), c.f.host(c.h.Name).routes...), nil
}

func (c *fakeConn) AccessLogSince(ctx context.Context, at int64) (int64, lb.Requests, error) {
	return 0, lb.Requests{}, nil
}

// fakeFixture is a project with an in-memory provider and fake hosts: no
// root, no network.
type fakeFixture struct {
	r    *Runner
	io   *fakeIO
	prov *memory.Provider
	env  string
	root string
	out  *testutil.SyncBuffer
}

var (
	helloOnce sync.Once
	helloRoot string
	helloErr  error
)

// fakeProject copies services/hello into a git repository with tags v1 and
// v2 (built once for every fake test).
// startedFake is a fake project of fakeRoles after env:startAll.
func startedFake(t *testing.T) (*fakeFixture, context.Context) {
	t.Helper()
	f := fakeProject(t, fakeRoles)
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	return f, ctx
}

// with changes the fake hosts' behaviour under their lock.
func (f *fakeIO) with(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

// fakeDatabase, when set, gives each fake project its inventory's
// database (BOOTED_DATABASE) instead of the SQLite file.
var fakeDatabase func(t testing.TB) string

// The fake tests again with the inventory on PostgreSQL (BOOTED_DATABASE
// set as a user sets it): the targets behave as they do on SQLite. All of
// them but the one that damages a SQLite file's row by hand.
func TestFake_OnPostgreSQL(t *testing.T) {
	fakeDatabase = pgtest.URL
	defer func() { fakeDatabase = nil }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"StartDeployUnreachableRetry", TestFake_StartDeployUnreachableRetry},
		{"FailedBatchRollsBack", TestFake_FailedBatchRollsBack},
		{"StopOrder", TestFake_StopOrder},
		{"RoleFollowsEnvFile", TestFake_RoleFollowsEnvFile},
		{"TwoLoadBalancers", TestFake_TwoLoadBalancers},
		{"ImageDelUpdatesLB", TestFake_ImageDelUpdatesLB},
		{"LBErrorIsWrapped", TestFake_LBErrorIsWrapped},
		{"HostsRun", TestFake_HostsRun},
		{"StartAllTwiceIsANoOp", TestFake_StartAllTwiceIsANoOp},
		{"Limit", TestFake_Limit},
		{"LoggedPrintsWithoutTheLock", TestFake_LoggedPrintsWithoutTheLock},
		{"QueryAttrsPools", TestFake_QueryAttrsPools},
		{"FactsAndClasses", TestFake_FactsAndClasses},
		{"PowerWithoutBMC", TestFake_PowerWithoutBMC},
		{"Rebuild", TestFake_Rebuild},
		{"RESTAPI", TestFake_RESTAPI},
	} {
		t.Run(tc.name, tc.test)
	}
}

// Two controllers (each its own inventory directory, as two machines
// have) sharing one PostgreSQL inventory: while one runs an operation on
// an environment, the other's waits and then fails naming it (an flock
// here would not see the other machine's); once it is done, the other's
// runs.
func TestFake_SharedInventoryOneOperationAtATime(t *testing.T) {
	fakeDatabase = pgtest.URL
	defer func() { fakeDatabase = nil }()
	f := fakeProject(t, fakeRoles)
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	other := newRunner(f.root, filepath.Join(t.TempDir(), "inventory"), io.Discard, io.Discard)
	other.Database, other.LockWait = f.r.Database, 2*time.Second
	held, finish, first := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		first <- f.r.withLock(ctx, f.env, "service:deploy fake hello v2", func(*session) error { close(held); <-finish; return nil })
	}()
	<-held
	err := other.withLock(ctx, f.env, "env:stop fake", func(*session) error { return nil })
	close(finish)
	if !errors.Is(err, envlock.ErrBusy) || !strings.Contains(err.Error(), "service:deploy fake hello v2") {
		t.Errorf("the other controller's operation during the first: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := other.withLock(ctx, f.env, "env:stop fake", func(*session) error { return nil }); err != nil {
		t.Errorf("the other controller's operation after the first: %v", err)
	}
}

func fakeProject(t *testing.T, roles string) *fakeFixture {
	t.Helper()
	root := t.TempDir()
	repo := testutil.RepoRoot(t)
	for _, d := range []string{"services", "nginx", "kickstart"} {
		if out, err := exec.Command("cp", "-r", filepath.Join(repo, d), filepath.Join(root, d)).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", d, err, out)
		}
	}
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", root, "-c", "user.name=t", "-c", "user.email=t@booted.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	for _, tag := range []string{"v1", "v2"} {
		os.WriteFile(filepath.Join(root, "services", "hello", "RELEASE"), []byte(tag+"\n"), 0o644)
		git("add", "services")
		git("commit", "-q", "-m", tag)
		git("tag", tag)
	}
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	y := "version: 1\nprovider:\n  type: local\n  local: {subnet: 192.0.2.0/24}\ntimeouts: {boot: 5s}\nroles:\n" + roles
	if err := os.WriteFile(filepath.Join(root, "envs", "fake.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &testutil.SyncBuffer{}
	f := &fakeFixture{io: newFakeIO(), prov: memory.New(netip.MustParseAddr("192.0.2.10")), env: "fake", root: root, out: out}
	f.r = newRunner(root, filepath.Join(root, "inventory"), out, testWriter{t})
	if fakeDatabase != nil {
		f.r.Database = fakeDatabase(t)
		t.Cleanup(func() {
			if _, err := os.Stat(filepath.Join(root, "inventory", "booted.db")); err == nil {
				t.Errorf("BOOTED_DATABASE=%s, but the inventory went to a SQLite file", f.r.Database)
			}
		})
	}
	// Builds are cached by version and commit: one artifact directory for
	// every fake test keeps the hello builds to one per version.
	helloOnce.Do(func() { helloRoot, helloErr = os.MkdirTemp("", "booted-fake-artifacts-") })
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	os.MkdirAll(f.r.Inventory, 0o700)
	os.Symlink(helloRoot, filepath.Join(f.r.Inventory, "artifacts"))
	f.r.HostIO = f.io
	f.r.OpenProvider = func(context.Context, *config.Env, provider.Options) (provider.Provider, error) { return f.prov, nil }
	return f
}

func (f *fakeFixture) must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, f.out)
	}
}

func (f *fakeFixture) states(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	f.must(t, f.r.withEnv(context.Background(), f.env, func(s *session) error {
		hs, err := s.Store.Hosts(context.Background(), f.env)
		for _, h := range hs {
			m[h.Name] = string(h.State)
		}
		return err
	}))
	return m
}

// routes is what lb routes to, as worker names.
func (f *fakeFixture) routes(lbName string) string {
	f.io.mu.Lock()
	defer f.io.mu.Unlock()
	byAddr := map[string]string{}
	for _, in := range mustList(f.prov) {
		byAddr[in.Addr+":8080"] = in.Name
	}
	var names []string
	for _, r := range f.io.host(lbName).routes {
		names = append(names, byAddr[r])
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func mustList(p *memory.Provider) []provider.Instance {
	l, _ := p.List(context.Background())
	return l
}

const fakeRoles = `  loadbalancers: {hosts: [lb1], min: 1, max: 1}
  workers: {prefix: w, count: 3, min: 1, max: 4, service: hello, version: v1}
`

// Ensure, in memory: env:startAll brings every host to serving with v1 and
// the load balancer routing to all workers; a deploy with one worker
// unreachable changes the others, leaves that one alone and fails naming
// it; BOOTED_RETRY=failed then deploys to it alone.
func TestFake_StartDeployUnreachableRetry(t *testing.T) {
	f, ctx := startedFake(t)
	for n, st := range f.states(t) {
		if st != "serving" {
			t.Errorf("%s is %s after env:startAll", n, st)
		}
	}
	if got := f.routes("lb1"); got != "w1 w2 w3" {
		t.Errorf("lb1 routes to %q", got)
	}
	f.io.with(func() {
		f.io.down["w2"] = true
	})
	err := f.r.ServiceDeploy(ctx, f.env, "hello", "v2")
	if err == nil || !strings.Contains(err.Error(), "w2 (unreachable") {
		t.Fatalf("deploy with w2 down: %v", err)
	}
	f.io.mu.Lock()
	for n, want := range map[string]string{"w1": "v2", "w2": "v1", "w3": "v2"} {
		if got := f.io.host(n).running; got != want {
			t.Errorf("%s runs %s, want %s", n, got, want)
		}
	}
	f.io.down["w2"] = false
	f.io.log = nil
	f.io.mu.Unlock()
	f.r.RetryFailed = true
	f.must(t, f.r.ServiceDeploy(ctx, f.env, "hello", "v2"))
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w2 v2]" {
		t.Errorf("the retry deployed %v, want w2 alone", got)
	}
	if got := f.routes("lb1"); got != "w1 w2 w3" {
		t.Errorf("after the retry lb1 routes to %q", got)
	}
}

// Ensure that a batch failing its health check is rolled back on the hosts
// it switched, nothing after it is touched, and the load balancer routes
// to every worker again.
func TestFake_FailedBatchRollsBack(t *testing.T) {
	f, ctx := startedFake(t)
	f.io.with(func() {
		f.io.badVersion, f.io.log = "v2", nil
	})
	err := f.r.ServiceDeploy(ctx, f.env, "hello", "v2")
	if err == nil || !strings.Contains(err.Error(), "stopped at batch 1 of 3: failed on w1, rolled back") {
		t.Fatalf("err = %v", err)
	}
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w1 v2]" {
		t.Errorf("deployed %v, want w1 alone", got)
	}
	if got := f.io.logged("rollback "); fmt.Sprint(got) != "[rollback w1]" {
		t.Errorf("rolled back %v", got)
	}
	f.io.mu.Lock()
	running := f.io.host("w1").running
	f.io.mu.Unlock()
	if running != "v1" {
		t.Errorf("w1 runs %s after the rollback", running)
	}
	if got := f.routes("lb1"); got != "w1 w2 w3" {
		t.Errorf("lb1 routes to %q after the rollback", got)
	}
	// Once v2 is good and deployed everywhere, service:rollback puts every
	// worker back on v1, batch by batch, and they all serve.
	f.io.with(func() {
		f.io.badVersion = ""
	})
	f.must(t, f.r.ServiceDeploy(ctx, f.env, "hello", "v2"))
	f.must(t, f.r.ServiceRollback(ctx, f.env+"/workers", "hello"))
	f.io.mu.Lock()
	for _, w := range []string{"w1", "w2", "w3"} {
		if got := f.io.host(w).running; got != "v1" {
			t.Errorf("%s runs %s after service:rollback", w, got)
		}
	}
	f.io.mu.Unlock()
	if got := f.routes("lb1"); got != "w1 w2 w3" {
		t.Errorf("lb1 routes to %q after service:rollback", got)
	}
}

// Ensure env:stop takes the load balancers down first, then the workers'
// service, then the hosts.
func TestFake_StopOrder(t *testing.T) {
	f, ctx := startedFake(t)
	f.must(t, f.r.EnvStop(ctx, f.env))
	var order []string
	for _, l := range f.io.logged("stop-") {
		order = append(order, l)
	}
	if len(order) < 4 || order[0] != "stop-lb lb1" {
		t.Errorf("stop order %v: the load balancer first", order)
	}
	calls := strings.Join(f.prov.Calls(), ",")
	if i, j := strings.Index(calls, "stop lb1"), strings.Index(calls, "stop w1"); i < 0 || j < 0 || i > j {
		t.Errorf("provider calls %s: lb1 must power off before w1", calls)
	}
	for n, st := range f.states(t) {
		if st != "stopped" {
			t.Errorf("%s is %s after env:stop", n, st)
		}
	}
}

// Ensure two load balancers are both updated and both shown by env:status
// (the status's route reads once wrote one map from two goroutines: run
// this with -race).
// A host the env file moves to another role (after env:destroy, its row
// kept as terminated) comes back in its new role: the env file says.
func TestFake_RoleFollowsEnvFile(t *testing.T) {
	f := fakeProject(t, "  loadbalancers: {hosts: [n1], min: 1, max: 1}\n  workers: {hosts: [n2], min: 1, max: 1, service: hello, version: v1}\n")
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	f.must(t, f.r.EnvDestroy(ctx, f.env))
	y := "version: 1\nprovider:\n  type: local\n  local: {subnet: 192.0.2.0/24}\ntimeouts: {boot: 5s}\nroles:\n" +
		"  loadbalancers: {hosts: [lb1], min: 1, max: 1}\n  workers: {hosts: [n1, n2], min: 1, max: 2, service: hello, version: v1}\n"
	if err := os.WriteFile(filepath.Join(f.root, "envs", "fake.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	if got := f.routes("lb1"); got != "n1 n2" {
		t.Errorf("lb1 routes to %q, want n1 n2 (n1 is a worker now)", got)
	}
}

func TestFake_TwoLoadBalancers(t *testing.T) {
	f := fakeProject(t, "  loadbalancers: {hosts: [lb1, lb2], min: 2, max: 2}\n  workers: {prefix: w, count: 2, min: 1, max: 2, service: hello, version: v1}\n")
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	for _, l := range []string{"lb1", "lb2"} {
		if got := f.routes(l); got != "w1 w2" {
			t.Errorf("%s routes to %q", l, got)
		}
	}
	f.out.Reset()
	f.r.JSON = true
	f.must(t, f.r.EnvStatus(ctx, f.env))
	var st []statusRow
	if err := unmarshalRows(f.out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	routes := map[string]string{}
	for _, r := range st {
		routes[r.Name] = r.Routes
	}
	for _, l := range []string{"lb1", "lb2"} {
		if !strings.HasPrefix(routes[l], "192.0.2.") {
			t.Errorf("env:status does not show %s's routes:\n%s", l, f.out)
		}
	}
}

// Ensure image:del of a serving worker takes it out of the load balancer.
func TestFake_ImageDelUpdatesLB(t *testing.T) {
	f, ctx := startedFake(t)
	err := f.r.ImageDel(ctx, f.env, "w2")
	if !errors.Is(err, provider.ErrRunning) || !strings.Contains(err.Error(), "BOOTED_FORCE=1") {
		t.Fatalf("image:del of a running host: %v, want ErrRunning naming BOOTED_FORCE", err)
	}
	if got := f.routes("lb1"); got != "w1 w2 w3" {
		t.Errorf("a refused delete changed lb1's routes: %q", got)
	}
	f.r.Force = true
	f.must(t, f.r.ImageDel(ctx, f.env, "w2"))
	if got := f.routes("lb1"); got != "w1 w3" {
		t.Errorf("after image:del w2, lb1 routes to %q", got)
	}
	if st := f.states(t)["w2"]; st != "terminated" {
		t.Errorf("w2 is %s", st)
	}
}

// Ensure a refused load balancer configuration reaches the caller as
// lb.ErrRefused (wrapped, not flattened into a string).
func TestFake_LBErrorIsWrapped(t *testing.T) {
	f, ctx := startedFake(t)
	f.io.with(func() {
		f.io.refuseLB = true
	})
	err := f.r.ServiceStart(ctx, f.env, "hello")
	if !errors.Is(err, lb.ErrRefused) || !strings.Contains(err.Error(), "lb1") {
		t.Errorf("service:start with a refusing load balancer: %v, want lb.ErrRefused naming lb1", err)
	}
	err = f.r.ImageStop(ctx, f.env, "w1")
	if !errors.Is(err, lb.ErrRefused) {
		t.Errorf("image:stop of a serving worker: %v, want lb.ErrRefused", err)
	}
}

// Ensure hosts:run runs on every host of a role, prefixed by host.
func TestFake_HostsRun(t *testing.T) {
	f, ctx := startedFake(t)
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, f.env+"/workers", "uptime"))
	for _, w := range []string{"w1", "w2", "w3"} {
		if !strings.Contains(f.out.String(), w+" | ran uptime") {
			t.Errorf("no output of %s:\n%s", w, f.out)
		}
	}
	if strings.Contains(f.out.String(), "lb1 |") {
		t.Errorf("ran on the load balancer too:\n%s", f.out)
	}
}

// Ensure a SIGHUP reload opens the provider again from the new env file:
// a static environment sees a host added to the file.
func TestSession_ReloadSwapsProvider(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	write := func(hosts string) {
		y := "version: 1\nprovider:\n  type: static\n  static:\n    known_hosts: " + filepath.Join(root, "kh") + "\n    hosts:\n" + hosts +
			"roles:\n  workers: {hosts: [a, b], min: 1, max: 2}\n"
		os.WriteFile(filepath.Join(root, "envs", "st.yaml"), []byte(y), 0o644)
	}
	write("      - {name: a, address: 192.0.2.1}\n")
	r := newRunner(root, filepath.Join(root, "inventory"), io.Discard, testWriter{t})
	ctx := context.Background()
	s, err := r.open(ctx, "st")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write("      - {name: a, address: 192.0.2.1}\n      - {name: b, address: 192.0.2.2}\n")
	if err := s.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := s.Provs.List(ctx)
	if len(list) != 2 || list[1].Name != "b" {
		t.Errorf("after the reload the provider lists %+v, want a and b", list)
	}
	write("      - {name: a, address: ''}\n") // a broken file: nothing changes
	if err := s.Reload(ctx); err == nil || !strings.Contains(err.Error(), "address: missing") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if list, _ := s.Provs.List(ctx); len(list) != 2 {
		t.Errorf("a failed reload changed the provider: %+v", list)
	}
}

// Ensure one damaged inventory row does not block the rest: hosts:list
// shows it as damaged, a deploy goes on with the other hosts and says it
// skipped it, and hosts:clear removes it.
func TestFake_DamagedRowDoesNotBlock(t *testing.T) {
	f, ctx := startedFake(t)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(f.r.Inventory, "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE hosts SET attrs = '{not json' WHERE name = 'w2'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f.out.Reset()
	f.must(t, f.r.HostsList(ctx, f.env))
	if !strings.Contains(f.out.String(), "DAMAGED ROW: attributes unreadable") {
		t.Errorf("hosts:list does not show the damaged row:\n%s", f.out)
	}
	f.io.with(func() {
		f.io.log = nil
	})
	f.must(t, f.r.ServiceDeploy(ctx, f.env, "hello", "v2"))
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w1 v2 deploy w3 v2]" {
		t.Errorf("deployed %v, want w1 and w3", got)
	}
	f.must(t, f.r.HostsClear(ctx, f.env))
	if _, ok := f.states(t)["w2"]; ok {
		t.Error("hosts:clear kept the damaged row")
	}
}

// Ensure env:startAll on an environment already up touches nothing: no
// drain (every load-balancer update routes to all the workers), no
// deploy, no restart; the recap says the hosts are unchanged. (The landed
// one drained each worker, reloaded and put it back.) A worker deployed
// by hand with another version is brought back to the env file's, and
// the recap says so (old → new), never "unchanged".
func TestFake_StartAllTwiceIsANoOp(t *testing.T) {
	f, ctx := startedFake(t)
	f.io.with(func() {
		f.io.log = nil
	})
	f.out.Reset()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	for _, op := range []string{"deploy ", "start ", "stop-service ", "rollback "} {
		if got := f.io.logged(op); len(got) > 0 {
			t.Errorf("the second env:startAll did %v", got)
		}
	}
	for _, l := range f.io.logged("lb ") {
		if len(strings.Fields(l)) != 2+3 { // lb lb1 and the three workers
			t.Errorf("the second env:startAll drained a worker: %s", l)
		}
	}
	if out := f.out.String(); !strings.Contains(out, "recap service:deploy hello v1 (unchanged hosts): 3 ok") {
		t.Errorf("no recap of the unchanged hosts:\n%s", out)
	}

	// w2 deployed by hand with v2: the next env:startAll puts it back on
	// v1 and says v2 → v1.
	f.must(t, f.r.ServiceDeploy(ctx, f.env+"/workers", "hello", "v2"))
	f.out.Reset()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	if out := f.out.String(); !regexp.MustCompile(`(?m)^  w1 +ok .*hello v2 → v1`).MatchString(out) || !regexp.MustCompile(`(?m)^  w3 +ok .*hello v2 → v1`).MatchString(out) || strings.Contains(out, "(unchanged hosts)") {
		t.Errorf("env:startAll after a deploy of v2 does not say v2 → v1 on each worker:\n%s", out)
	}
}

// Ensure BOOTED_LIMIT (hosts or roles, globs) narrows the multi-host
// targets, as Ansible's --limit: a deploy touches only the hosts it
// names, hosts:run runs only there, a limit matching nothing is refused.
func TestFake_Limit(t *testing.T) {
	f, ctx := startedFake(t)
	f.io.with(func() {
		f.io.log = nil
	})
	f.r.Limit = []string{"w2"}
	f.must(t, f.r.ServiceDeploy(ctx, f.env, "hello", "v2"))
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w2 v2]" {
		t.Errorf("BOOTED_LIMIT=w2 deployed %v", got)
	}
	f.r.Limit = []string{"lb*", "w3"}
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, f.env, "uptime"))
	out := f.out.String()
	if !strings.Contains(out, "lb1 | ran uptime") || !strings.Contains(out, "w3  | ran uptime") || strings.Contains(out, "w1") || strings.Contains(out, "w2") {
		t.Errorf("BOOTED_LIMIT=lb*,w3 hosts:run:\n%s", out)
	}
	f.r.Limit = []string{"workers"}
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, f.env, "uptime"))
	if out := f.out.String(); strings.Contains(out, "lb1") || !strings.Contains(out, "w1") {
		t.Errorf("BOOTED_LIMIT=workers (a role) hosts:run:\n%s", out)
	}
	f.r.Limit = []string{"nope*"}
	if err := f.r.HostsRun(ctx, f.env, "uptime"); err == nil || !strings.Contains(err.Error(), "BOOTED_LIMIT=nope* matches none") {
		t.Errorf("a limit matching nothing: %v", err)
	}
}

// probeWriter runs probe at its first write (while a target prints).
type probeWriter struct {
	once  sync.Once
	probe func()
}

func (w *probeWriter) Write(p []byte) (int, error) {
	w.once.Do(w.probe)
	return len(p), nil
}

// Ensure hosts:logged does not hold the environment while it prints: an
// operation that needs the environment (nginx:restart, with no wait) gets
// it meanwhile. It waited for the whole listing (10,000 hosts: past
// nginx:restart's wait).
func TestFake_LoggedPrintsWithoutTheLock(t *testing.T) {
	f := fakeProject(t, fakeRoles)
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	var during error
	probed := false
	other := newRunner(f.root, filepath.Join(f.root, "inventory"), io.Discard, io.Discard)
	other.Database = f.r.Database
	other.LockWait = 100 * time.Millisecond // (the environment is held by the very call that prints: waiting longer changes nothing)
	f.r.Out = &probeWriter{probe: func() {
		probed = true
		during = other.withLock(ctx, f.env, "probe "+f.env, func(*session) error { return nil })
	}}
	defer func() { f.r.Out = f.out }()
	f.must(t, f.r.HostsLogged(ctx, f.env))
	if !probed || during != nil {
		t.Errorf("while hosts:logged printed, the environment was not free (printed: %v): %v", probed, during)
	}
}

// A rolling deploy whose process died on the way (kill -9 leaves its
// journal entry and no lock) is finished by the monitor daemon (not
// while the process lives and holds the lock): the hosts
// it had not reached get the version, the one it had is left alone, and
// an event says whose operation was resumed. (No load balancer: the
// daemon's probes would go to the fake hosts' addresses.)
func TestFake_DaemonFinishesAnOrphanedDeploy(t *testing.T) {
	f := fakeProject(t, "  workers: {prefix: w, count: 3, min: 1, max: 4, service: hello, version: v1}\nmonitor: {listen: '127.0.0.1:0', interval: 500ms}\n")
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	f.r.Limit = []string{"w1"}
	f.must(t, f.r.ServiceDeploy(ctx, f.env, "hello", "v2"))
	f.r.Limit = nil
	// what a service:deploy of w1, w2, w3 killed after w1 leaves behind
	f.must(t, f.r.withEnv(ctx, f.env, func(s *session) error {
		return journal.Begin(ctx, s.Store, f.env, journal.Entry{Kind: journal.Deploy, Service: "hello", Version: "v2",
			Hosts: []string{"w1", "w2", "w3"}, Holder: "pid 4242 on gone", Started: time.Now()})
	}))
	f.io.with(func() { f.io.log = nil })
	// While its process lives (it holds the environment's lock), the
	// daemon leaves it alone.
	held, finish, owner := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		owner <- f.r.withLock(ctx, f.env, "service:deploy fake hello v2", func(*session) error { close(held); <-finish; return nil })
	}()
	<-held
	dctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.r.MonitorRun(dctx, f.env) }()
	time.Sleep(2 * time.Second) // four intervals
	if got := f.io.logged("deploy "); len(got) != 0 {
		t.Errorf("the daemon deployed %v while the deploy's process lived", got)
	}
	close(finish) // now it is gone
	if err := <-owner; err != nil {
		t.Fatal(err)
	}
	pending := true
	for start := time.Now(); pending && time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		f.must(t, f.r.withEnv(ctx, f.env, func(s *session) (err error) {
			_, pending, err = journal.Pending(ctx, s.Store, f.env)
			return err
		}))
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("monitor:run: %v", err)
	}
	if pending {
		t.Fatalf("the orphaned deploy is still pending after 30 s; output:\n%s", f.out)
	}
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w2 v2 deploy w3 v2]" {
		t.Errorf("the daemon deployed %v, want w2 and w3 (w1 was done)", got)
	}
	f.io.mu.Lock()
	for _, n := range []string{"w1", "w2", "w3"} {
		if got := f.io.host(n).running; got != "v2" {
			t.Errorf("%s runs %s, want v2", n, got)
		}
	}
	f.io.mu.Unlock()
	var resumed []string
	f.must(t, f.r.withEnv(ctx, f.env, func(s *session) error {
		evs, err := s.Store.EventsOfKind(ctx, f.env, "operation-resumed", 10)
		for _, e := range evs {
			resumed = append(resumed, e.Detail)
		}
		return err
	}))
	if len(resumed) != 1 || !strings.Contains(resumed[0], "service:deploy hello v2 (3 hosts), started by pid 4242 on gone") {
		t.Errorf("operation-resumed events: %q", resumed)
	}
	if got := deployedEvents(t, f.r, f.env, "v2"); fmt.Sprint(got) != "map[w1:1 w2:1 w3:1]" {
		t.Errorf("deployed events of v2 by host: %v, want one each", got)
	}
}

// deployedEvents counts the deployed events of version by host.
func deployedEvents(t *testing.T, r *Runner, env, version string) map[string]int {
	t.Helper()
	n := map[string]int{}
	err := r.withEnv(context.Background(), env, func(s *session) error {
		evs, err := s.Store.EventsOfKind(context.Background(), env, "deployed", 1000)
		for _, e := range evs {
			if strings.Contains(e.Detail, " "+version+" ") {
				n[e.Host]++
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
