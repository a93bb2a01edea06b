package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"booted/internal/pgtest"
	sess "booted/internal/session"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"booted/internal/bootlog"
	"booted/internal/bridge"
	"booted/internal/deploy"
	"booted/internal/files"
	"booted/internal/report"
	"booted/internal/settings"
	"booted/internal/testutil"
)

// A conductor process for TestConducted_HostsRun: the test binary run
// again with BOOTED_TEST_CONDUCTOR=ROOT|ENV|SITE.
func TestMain(m *testing.M) {
	if spec := os.Getenv("BOOTED_TEST_CONDUCTOR"); spec != "" {
		f := strings.Split(spec, "|")
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		st, err := settings.FromEnviron() // BOOTED_NATS_CREDENTIALS, say
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		st.Root, st.Inventory = f[0], f[0]+"/inventory"
		r := &Runner{sess.Options{Settings: st, Out: os.Stdout, Err: os.Stderr}}
		if err := r.ConductorRun(ctx, f[1], f[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv("BOOTED_TEST_DEPLOY"); spec != "" { // ENV|SVC|VERSION: service:deploy in a process a test kills
		f := strings.Split(spec, "|")
		st, err := settings.FromEnviron() // BOOTED_ROOT, BOOTED_INVENTORY, BOOTED_DATABASE
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		r := &Runner{sess.Options{Settings: st, Out: os.Stdout, Err: os.Stderr}}
		if err := r.ServiceDeploy(context.Background(), f[0], f[1], f[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := pgtest.Main(m)
	if helloRoot != "" { // the fake tests' shared builds: gone with the run
		os.RemoveAll(helloRoot)
	}
	os.Exit(code)
}

// The test, on this machine: a 3-server NATS cluster made as a
// user makes it (nats:config, TLS, an nkey per site), two conductors for
// site a (20 workers) and one for site b (the load balancer), processes of
// their own, each in a network namespace whose one link is on the hosts'
// bridge; the controller (this process) cannot open a connection to any
// host (an nftables rule drops and counts them: none). env:startAll brings
// the hosts up and deploys v1 through the conductors; hosts:run comes back as
// if it ran here; a deploy of v2 with one of a's conductors killed (-9)
// in the middle ends with every worker on v2, each deployed once (by the
// inventory's events), the recap complete; a conductor killed while it
// holds a command's hosts fails them naming it, never runs it twice, and
// BOOTED_RETRY=failed runs just those; a conductor with a key the servers
// do not know gets nothing.
func TestConducted(t *testing.T) {
	t0 := time.Now()
	phase := func(what string) { t.Logf("%v: %s", time.Since(t0).Round(100*time.Millisecond), what) }
	f := newFixture(t, testutil.Workers(20, 20)+testutil.Hello)
	// The servers listen on the bridge's address: the conductors reach
	// them from their namespaces, the controller from here.
	var urls, routes []string
	for i := 0; i < 3; i++ {
		urls = append(urls, "tls://"+strings.Replace(testutil.FreePort(t), "127.0.0.1", f.proj.Gateway, 1))
		routes = append(routes, "nats-route://"+strings.Replace(testutil.FreePort(t), "127.0.0.1", f.proj.Gateway, 1))
	}
	// Each site's hosts on a bridge of its own (sites.X.subnet), routed
	// to each other through this machine; NATS and the callbacks on the
	// environment's bridge.
	siteNet := func(plus int) string { // 10.X.Y.0/24 → 10.X+plus.Y.0/24
		p := strings.Split(f.proj.Subnet, ".")
		x, _ := strconv.Atoi(p[1])
		return fmt.Sprintf("%s.%d.%s.0/24", p[0], x+plus, p[2])
	}
	subnetA, subnetB := siteNet(16), siteNet(32)
	f.proj.WriteEnv(t, testutil.Workers(20, 20)+testutil.Hello+testutil.EnvFile(fmt.Sprintf(`nats:
  urls: [%s]
  routes: [%s]
  ack_wait: 5s
sites:
  a:
    roles: [workers]
    subnet: %s
  b:
    hosts: [lb1]
    subnet: %s
`, strings.Join(urls, ", "), strings.Join(routes, ", "), subnetA, subnetB)))
	f.proj.GitInit(t, "v1", "v2")
	f.r.Batch = "10"
	ctx := context.Background()
	env := f.proj.Env
	confs := f.natsConfig(t, env)
	if len(confs) != 3 {
		t.Fatalf("nats:config: %d servers to start, want 3:\n%s", len(confs), f.out.String())
	}
	nats := testutil.StartNATSFrom(t, confs, urls)
	// The controller started: the environment's bridges are made, the
	// sites' networks the conductors' machines sit on.
	f.must(t, f.r.NginxRestart(ctx, env))
	natsDir := filepath.Dir(confs[0])

	var mu sync.Mutex
	logs := map[string]*strings.Builder{}
	procs := map[string]*exec.Cmd{} // the conductors, by name
	// Each conductor in its site's network namespace (as a process on the
	// site's machine): it reaches its site's bridge, and this machine
	// (NATS) through the site's uplink; nothing of another site. Site a's
	// are started there; b1 here, and it enters its site's by itself.
	conductor := func(name, site string, env_ ...string) *exec.Cmd {
		cmd := exec.Command("nsenter", "--net=/run/netns/"+bridge.SiteNetns(env, site), os.Args[0], "-test.run=^$")
		if site == "b" {
			cmd = exec.Command(os.Args[0], "-test.run=^$")
		}
		// 8 jobs at once: a batch of 10 is shared.
		cmd.Env = append(append(os.Environ(), "BOOTED_TEST_CONDUCTOR="+f.proj.Root+"|"+env+"|"+site, "BOOTED_PARALLEL=8"), env_...)
		mu.Lock()
		logs[name] = &strings.Builder{}
		mu.Unlock()
		w := prefixWriter{t: t, name: name, mu: &mu, log: logs[name]}
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		procs[name] = cmd
		mu.Unlock()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
		})
		return cmd
	}
	// Without a key of nats:config's, NATS refuses the connection (over
	// TLS, checked against its CA): no jobs published, none taken.
	if nc, err := natsgo.Connect(nats.URL(), natsgo.Timeout(5*time.Second), natsgo.RootCAs(filepath.Join(natsDir, "ca.pem"))); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("a client without the nkey: %v, want an authorization violation", err)
	}
	stranger, _ := nkeys.CreateUser()
	seed, _ := stranger.Seed()
	strangerSeed := filepath.Join(t.TempDir(), "stranger.nk")
	os.WriteFile(strangerSeed, seed, 0o600)
	conductor("stranger", "a", "BOOTED_NATS_CREDENTIALS="+strangerSeed)
	c1 := conductor("a1", "a")
	conductors := map[string]*exec.Cmd{"a2": conductor("a2", "a"), "b1": conductor("b1", "b")}
	beating := func() map[string]int {
		r := *f.r
		var out testutil.SyncBuffer
		r.JSON, r.Out = true, &out
		n := map[string]int{}
		if err := r.ConductorsList(ctx, env); err != nil {
			t.Logf("conductors:list: %v", err)
		} else {
			for _, l := range strings.Split(out.String(), "\n") {
				var row struct{ Site string }
				if json.Unmarshal([]byte(l), &row) == nil && row.Site != "" {
					n[row.Site]++
				}
			}
		}
		return n
	}
	phase("cluster and conductors up")
	f.waitFor(t, "three conductors beating", 30*time.Second, func() bool { n := beating(); return n["a"] == 2 && n["b"] == 1 })

	phase("conductors beating")
	netnsOf := func(path string) string { l, _ := os.Readlink(path); return l }
	var st syscall.Stat_t
	syscall.Stat("/run/netns/"+bridge.SiteNetns(env, "b"), &st)
	if got, want := netnsOf(fmt.Sprintf("/proc/%d/ns/net", conductors["b1"].Process.Pid)), fmt.Sprintf("net:[%d]", st.Ino); got != want {
		t.Errorf("conductor b1 (pid %d, started outside its site's network) is in %s, want site b's %s", conductors["b1"].Process.Pid, got, want)
	}
	// From here the controller (this process) cannot open a connection to
	// any host: an nftables rule drops (and counts) them; the bridge's
	// own address (NATS, the callbacks' nginx) stays reachable.
	iso := "booted_iso_" + env
	// (A connection's opening: a SYN, or a ping. A late segment to a killed
	// conductor is state "new" to conntrack's loose pickup, not an opening.)
	rule := fmt.Sprintf(`table inet %[1]s {
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr { %[2]s } ip daddr != %[3]s tcp flags & (syn | ack) == syn counter drop
		ip daddr { %[2]s } ip daddr != %[3]s icmp type echo-request counter drop
	}
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr { %[4]s } tcp dport 8077 counter drop
	}
}
`, iso, strings.Join([]string{f.proj.Subnet, subnetA, subnetB}, ", "), f.proj.Gateway, subnetA+", "+subnetB)
	nft := exec.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(rule)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", iso).Run() })
	// (And the sites' hosts cannot reach the controller's nginx: they
	// phone home to their site's, on its router, where its conductors are.)
	counters := func() []string {
		out, _ := exec.Command("nft", "list", "table", "inet", iso).Output()
		ms := regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(string(out), -1)
		if len(ms) != 3 {
			t.Fatalf("nft list table inet %s: not three counters:\n%s", iso, out)
		}
		return []string{ms[0][1], ms[1][1], ms[2][1]}
	}
	dropped := func() string { c := counters(); return c[0] + " SYN, " + c[1] + " ping" }
	// env:startAll: the workers' v1 deployed by site a's conductors.
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.EnvStartAll(ctx, env))
	f.r.JSON = false
	byConductor := map[string]int{} // deployed, tested
	for _, l := range strings.Split(f.out.String(), "\n") {
		var res struct {
			Operation string
			Results   []struct{ Host, Status, Note string }
		}
		if json.Unmarshal([]byte(l), &res) == nil {
			for _, r := range res.Results {
				if r.Status == "ok" && strings.Contains(r.Note, "(conductor ") {
					byConductor[strings.Join(strings.Fields(res.Operation)[:2], " ")]++
				}
			}
		}
	}
	if byConductor["service:deploy hello"] != 20 || byConductor["service:test hello"] != 20 {
		t.Errorf("env:startAll: by a conductor %v, want 20 workers deployed and 20 tested:\n%s", byConductor, f.out)
	}
	// The bring-up's liveness checks and facts, and the load balancer's
	// configuration, by the sites' conductors too.
	mu.Lock()
	siteA, siteB := logs["a1"].String()+logs["a2"].String(), logs["b1"].String()
	mu.Unlock()
	for _, w := range workers(20) {
		for _, kind := range []string{"alive", "facts"} {
			if !strings.Contains(siteA, ": "+kind+" on "+w+" (") {
				t.Errorf("%s: no %s job in site a's conductors' logs", w, kind)
			}
		}
	}
	// Every host built and booted by its site's conductors.
	for _, w := range workers(20) {
		if !strings.Contains(siteA, ": host.boot on "+w+" (") {
			t.Errorf("%s: not booted by site a's conductors", w)
		}
	}
	if !strings.Contains(siteB, ": host.build on lb1 (") || !strings.Contains(siteB, ": host.boot on lb1 (") {
		t.Errorf("lb1: not built and booted by site b's conductor:\n%s", siteB)
	}
	// Every host phoned home to its site's nginx, none to the controller's;
	// the controller recorded them from what the sites' conductors passed on.
	if c := counters(); c[2] != "0" {
		t.Errorf("the sites' hosts sent %s packets to the controller's nginx; want none", c[2])
	}
	for site, n := range map[string]int{"a": 20, "b": 1} {
		b, _ := os.ReadFile(filepath.Join(f.proj.Root, "inventory", env, "sites", site, "booted.log"))
		if got := strings.Count(string(b), "/booted/"); got < n {
			t.Errorf("site %s's boot log: %d callbacks, want %d at least:\n%s", site, got, n, b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(f.proj.Root, "inventory", env, "booted.log")); len(b) > 0 {
		t.Errorf("the controller's boot log has callbacks:\n%s", b)
	}
	// A callback naming another host of the site, from w1: its site's
	// conductor does not pass it on (not w5's address). One naming w1 with
	// a wrong token: passed on, and the controller refuses it (the token).
	w1ns, w1h := "booted-"+env+"-w1", f.hosts(t)["w1"]
	siteURL := "http://" + strings.TrimSuffix(subnetA, "0/24") + "1:8077/booted/?"
	for _, q := range []string{bootlog.Query("w5", strings.Repeat("ab", 32), mustKey(t, w1h.HostKey)), bootlog.Query("w1", strings.Repeat("cd", 32), mustKey(t, w1h.HostKey))} {
		if out, err := exec.Command("ip", "netns", "exec", w1ns, "curl", "-fsS", siteURL+q).CombinedOutput(); err != nil {
			t.Fatalf("curl from w1 to its site's nginx: %v: %s", err, out)
		}
	}
	f.waitFor(t, "the wrong token refused by the controller", 20*time.Second, func() bool {
		f.out.Reset()
		f.must(t, f.r.HostsLogged(ctx, env))
		return strings.Contains(f.out.String(), "rejected callbacks: 1 (forged 1,")
	})
	mu.Lock()
	if siteA := logs["a1"].String() + logs["a2"].String(); !strings.Contains(siteA, "callback for w5 from "+w1h.IP+": not its address") {
		t.Errorf("site a's conductors passed on a callback for w5 from w1's address:\n%s", siteA)
	}
	mu.Unlock()
	if !strings.Contains(siteB, ": lb on lb1 (") || !strings.Contains(siteB, ": alive on lb1 (") {
		t.Errorf("lb1: its liveness and configuration not by site b's conductor:\n%s", siteB)
	}
	if h := f.hosts(t); len(h["w7"].Attrs["cpus"]) == 0 || h["lb1"].State != "serving" {
		t.Errorf("after env:startAll: w7's facts %v, lb1 %s", h["w7"].Attrs, h["lb1"].State)
	}

	// Each site's hosts on its own bridge; a site's conductor reaches its
	// own network, not the other site's.
	for name, h := range f.hosts(t) {
		want := subnetA
		if name == "lb1" {
			want = subnetB
		}
		if pfx := netip.MustParsePrefix(want); !pfx.Contains(netip.MustParseAddr(h.IP)) {
			t.Errorf("%s at %s, not on its site's subnet %s", name, h.IP, want)
		}
	}
	lb1, w1 := net.JoinHostPort(f.hosts(t)["lb1"].IP, strconv.Itoa(deploy.LBPort)), net.JoinHostPort(f.hosts(t)["w1"].IP, "8080")
	reaches := func(ns, addr string) bool { // a TCP connection made from ns
		host, port, _ := net.SplitHostPort(addr)
		return exec.Command("ip", "netns", "exec", ns, "timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port).Run() == nil
	}
	if cb1 := bridge.SiteNetns(env, "b"); !reaches(cb1, lb1) || reaches(cb1, w1) {
		t.Errorf("conductor b1's network: lb1 (its site's) reached %v, w1 (site a's) reached %v; want only its site's", reaches(cb1, lb1), reaches(cb1, w1))
	}
	if !reaches("booted-"+env+"-lb1", w1) { // the load balancer reaches site a's workers
		t.Errorf("lb1 does not reach w1 (%s) across the sites' bridges", w1)
	}
	// Site a's nginx stopped: the conductor following its boot log starts
	// it again (the hosts' callbacks have nowhere else to go).
	pidOf := func() int {
		b, _ := os.ReadFile(filepath.Join(f.proj.Root, "inventory", env, "sites", "a", "nginx", "nginx.pid"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	was := pidOf()
	if was == 0 {
		t.Fatal("site a's nginx: no pid file")
	}
	syscall.Kill(was, syscall.SIGTERM)
	siteANginx := strings.TrimSuffix(subnetA, "0/24") + "1:8077"
	f.waitFor(t, "site a's nginx started again by its conductor", 30*time.Second, func() bool {
		return pidOf() != 0 && pidOf() != was && reaches(bridge.SiteNetns(env, "a"), siteANginx)
	})
	phase("env:startAll done")
	// Through the conductors: each host's output and status.
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env, "hostname; echo $$ >> /root/ran"))
	f.r.JSON = false
	lines := map[string]report.HostLine{}
	for _, l := range strings.Split(strings.TrimSpace(f.out.String()), "\n") {
		var hl report.HostLine
		if json.Unmarshal([]byte(l), &hl) == nil && hl.Host != "" {
			lines[hl.Host] = hl
		}
	}
	for _, h := range append(workers(20), "lb1") {
		hl := lines[h]
		if hl.Status != "ok" || strings.TrimSpace(hl.Stdout) != h || !strings.HasPrefix(hl.Note, "by conductor ") {
			t.Errorf("hosts:run on %s: %+v, want its name, by a conductor", h, hl)
		}
	}
	if sum := lastSummary(t, f.out.String()); sum.OK != 21 {
		t.Errorf("recap: %+v", sum)
	}

	phase("hosts:run done")
	// v2 with a1 killed (-9) in the middle: as soon as it starts a job of
	// the deploy (its other jobs in hand are redelivered to a2 after the
	// ack wait; a deploy is idempotent: a2 does them again).
	var before int64 // the newest event's ID
	for _, e := range f.events(t, "") {
		before = max(before, e.ID)
	}
	runsOf := func(log, kind string) map[string]bool { // the runs of a kind's jobs in a conductor's log
		m := map[string]bool{}
		for _, l := range strings.Split(log, "\n") {
			if _, rest, ok := strings.Cut(l, ": job "); ok && strings.Contains(rest, ": "+kind+" on ") {
				id, _, _ := strings.Cut(rest, ":")
				run, _, _ := strings.Cut(id, ".")
				m[run] = true
			}
		}
		return m
	}
	// runsSeen are the runs of kind's jobs in name's log; newRun says
	// whether it shows a job of a run not in seen.
	runsSeen := func(name, kind string) map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		return runsOf(logs[name].String(), kind)
	}
	newRun := func(name, kind string, seen map[string]bool) bool {
		for r := range runsSeen(name, kind) {
			if !seen[r] {
				return true
			}
		}
		return false
	}
	seen := runsSeen("a1", "deploy")
	stop := make(chan struct{})
	killedMid := false
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if newRun("a1", "deploy", seen) {
				c1.Process.Signal(syscall.SIGKILL)
				killedMid = true
				return
			}
		}
	}()
	f.out.Reset()
	f.r.JSON = true
	err := f.r.ServiceDeploy(ctx, env, "hello", "v2")
	f.r.JSON = false
	close(stop)
	wg.Wait()
	if !killedMid {
		t.Errorf("a1 took no job of the deploy of v2: not killed in its middle")
		c1.Process.Signal(syscall.SIGKILL)
	}
	c1.Wait()
	t.Logf("service:deploy hello v2 with conductor a1 killed:\n%s", f.out)
	f.must(t, err)
	if sum := lastSummary(t, f.out.String()); sum.OK != 10 { // the second batch's recap
		t.Errorf("deploy v2's last recap: %+v", sum)
	}
	hosts := f.hosts(t)
	for _, w := range workers(20) {
		if hosts[w].State != "serving" {
			t.Errorf("%s is %s after deploying v2", w, hosts[w].State)
		}
	}
	if got, want := f.hostsOutput(t, env+"/workers", "curl -s http://127.0.0.1:8080/version"), strings.Repeat("v2\n", 20); strings.Count(got, "\nv2\n") != 20 {
		t.Errorf("each worker's /version after deploying v2 (hosts:run, through the conductors):\n%s\nwant 20 × %q", got, want)
	}
	served := map[string]int{}
	for _, e := range f.events(t, "") {
		if e.ID > before && e.To == "serving" {
			served[e.Host]++
		}
	}
	for _, w := range workers(20) {
		if served[w] != 1 {
			var trail []string
			for _, e := range f.events(t, w) {
				if e.ID > before {
					trail = append(trail, fmt.Sprintf("%s %s→%s %s", e.Kind, e.From, e.To, e.Detail))
				}
			}
			t.Errorf("%s: put back to serving %d times by the deploy of v2 (its events since: %s), want once", w, served[w], strings.Join(trail, "; "))
		}
	}

	mu.Lock()
	redone := len(regexp.MustCompile(`: deploy on \S+ \(delivery [2-9]`).FindAllString(logs["a2"].String(), -1))
	mu.Unlock()
	t.Logf("deploy v2 of 20 workers with a1 killed at its first job: %d jobs redelivered to a2 and done there, each worker put back to serving once", redone)

	phase("deploy v2 done")

	// The other per-host steps through the conductors too: a rollback,
	// a stop and a start, the logs (BOOTED_LIMIT: w1 and w2), each
	// recorded here from what the conductors say.
	f.r.Limit, f.r.JSON = []string{"w1", "w2"}, true
	f.out.Reset()
	f.must(t, f.r.ServiceRollback(ctx, env, "hello"))
	f.must(t, f.r.ServiceStop(ctx, env, "hello"))
	stopped := f.hosts(t)
	f.must(t, f.r.ServiceStart(ctx, env, "hello"))
	notes := conductedNotes(f.out.String())
	f.r.JSON = false
	f.out.Reset()
	f.must(t, f.r.ServiceLogs(ctx, env, "hello"))
	logsOut := f.out.String()
	// A file to the hosts and back (hosts:put, hosts:get), through the
	// conductors; a file too large to come back in a message is refused
	// naming the host and what to do.
	src := filepath.Join(t.TempDir(), "motd")
	os.WriteFile(src, []byte("hello from the controller\n"), 0o640)
	got := t.TempDir()
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsPut(ctx, env, src, "/root/motd"))
	f.must(t, f.r.HostsPut(ctx, env, src, "/root/motd"))
	f.must(t, f.r.HostsGet(ctx, env, "/root/motd", got))
	copies := conductedNotes(f.out.String())
	// A file larger than a message comes through the site's files bucket
	// (it was refused); again: unchanged.
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env, "head -c 3000000 /dev/urandom > /root/big && sha256sum /root/big"))
	bigSums := map[string]string{}
	for _, l := range strings.Split(f.out.String(), "\n") {
		var hl report.HostLine
		if json.Unmarshal([]byte(l), &hl) == nil && hl.Host != "" {
			bigSums[hl.Host] = strings.Fields(hl.Stdout + " -")[0]
		}
	}
	f.out.Reset()
	f.must(t, f.r.HostsGet(ctx, env, "/root/big", got))
	f.must(t, f.r.HostsGet(ctx, env, "/root/big", got))
	big := conductedNotes(f.out.String())
	f.r.JSON = false
	f.r.Limit = nil
	for _, w := range []string{"w1", "w2"} {
		sum, _ := files.Sum(filepath.Join(got, w, "big"))
		if sum != bigSums[w] || len(sum) != 64 {
			t.Errorf("hosts:get of %s's 3 MB file: sha256 %q here, %q there", w, sum, bigSums[w])
		}
		if n := big["hosts:get /root/big"][w]; !strings.HasPrefix(n, "unchanged: ") || !strings.Contains(n, "(conductor ") {
			t.Errorf("the second hosts:get of the 3 MB file on %s: %q, want unchanged, by a conductor", w, n)
		}
	}
	for _, w := range []string{"w1", "w2"} {
		if b, _ := os.ReadFile(filepath.Join(got, w, "motd")); string(b) != "hello from the controller\n" {
			t.Errorf("hosts:get brought %q from %s", b, w)
		}
		if n := copies["hosts:put "+src][w]; !strings.HasPrefix(n, "unchanged: /root/motd has that content already (conductor ") {
			t.Errorf("the second hosts:put on %s: %q, want unchanged, by a conductor", w, n)
		}
		if n := copies["hosts:get /root/motd"][w]; !strings.HasPrefix(n, "copied 26 bytes to ") || !strings.Contains(n, "(conductor ") {
			t.Errorf("hosts:get on %s: %q, want copied 26 bytes, by a conductor", w, n)
		}
	}
	if got := f.hostsOutput(t, env+"/w1,w2", "stat -c %a /root/motd"); got != "w1:\n640\nw2:\n640\n" {
		t.Errorf("/root/motd's mode on the hosts:\n%s", got)
	}
	for _, w := range []string{"w1", "w2"} {
		for op, want := range map[string]string{"service:rollback hello": "back on v1, pid ", "service:stop hello": "stopped (was pid ", "service:start hello": "running v1, pid "} {
			if n := notes[op][w]; !strings.HasPrefix(n, want) || !strings.Contains(n, "(conductor ") {
				t.Errorf("%s on %s: note %q, want %q… by a conductor", op, w, n, want)
			}
		}
		if stopped[w].State != "ready" {
			t.Errorf("%s is %s after service:stop, want ready", w, stopped[w].State)
		}
		if !regexp.MustCompile(`(?m)^` + w + ` +\|.*listening`).MatchString(logsOut) {
			t.Errorf("service:logs: no line of %s's log, prefixed by its name:\n%s", w, logsOut)
		}
	}
	if got := f.hostsOutput(t, env+"/w1,w2,w3", "curl -s http://127.0.0.1:8080/version"); got != "w1:\nv1\nw2:\nv1\nw3:\nv2\n" {
		t.Errorf("/version after rolling back w1 and w2:\n%s", got)
	}
	if h := f.hosts(t); h["w1"].State != "serving" || h["w2"].State != "serving" {
		t.Errorf("after service:start: w1 %s, w2 %s, want serving", h["w1"].State, h["w2"].State)
	}
	phase("rollback, stop, start, logs through the conductors done")

	// BOOTED_FOLLOW=1 through a conductor: a line written on w1 while it
	// follows comes as it is written; Ctrl-C ends it cleanly, and stops
	// the tail on the host (the run stops where it runs).
	f.r.Limit = []string{"w1"}
	f.followLog(t, env, "w1", 20*time.Second)
	f.waitFor(t, "the tail on w1 stopped after Ctrl-C", 15*time.Second, func() bool {
		return !strings.Contains(f.hostsOutput(t, env+"/w1", "pgrep -a tail || true"), "-F")
	})
	f.r.Limit = nil
	phase("service:logs following through a conductor done")

	// The monitor's reads and bench:load through the conductors too: each
	// worker's health, the versions and routes the status page shows, and
	// the service measured through the load balancer (probes and its
	// access log), all sent from site b's conductor, near lb1.
	m := sess.NewMonitorEnv(mustSession(t, f).Session)
	_, healthy, err := m.Workers(ctx)
	if err != nil {
		t.Fatalf("the monitor's workers: %v", err)
	}
	ov, err := m.Overview(ctx)
	if err != nil {
		t.Fatalf("the status page's overview: %v", err)
	}
	page := map[string]monitorPageHost{}
	for _, h := range ov.Hosts {
		page[h.Name] = monitorPageHost{h.Version, h.Routed}
	}
	for _, w := range workers(20) {
		want := monitorPageHost{"v2", true}
		if w == "w1" || w == "w2" {
			want.version = "v1"
		}
		if !healthy[w] || page[w] != want {
			t.Errorf("the monitor on %s: healthy %v, status page %+v, want healthy, %+v", w, healthy[w], page[w], want)
		}
	}
	if _, err := m.Measure(ctx, time.Second); err != nil { // the first look learns where the access log ends
		t.Fatalf("the monitor's measure: %v", err)
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.BenchLoad(ctx, env, 2*time.Second, 20))
	f.r.JSON = false
	var bench struct{ Sent, Failed int }
	if err := json.Unmarshal(f.out.Bytes(), &bench); err != nil || bench.Sent < 30 || bench.Failed != 0 {
		t.Errorf("bench:load through site b's conductor: %+v (%v): %s", bench, err, f.out)
	}
	meas, err := m.Measure(ctx, time.Second)
	if err != nil || meas.Requests < bench.Sent {
		t.Errorf("the monitor's measure after bench:load (%d requests): %+v, %v; want them read from the access log", bench.Sent, meas, err)
	}
	phase("the monitor's reads and bench:load through the conductors done")

	// A NATS server killed (-9) during a run: the run finishes, every
	// worker ok, the command run once on each.
	f.out.Reset()
	f.r.JSON = true
	done := make(chan error, 1)
	go func() { done <- f.r.HostsRun(ctx, env+"/workers", "sleep 1; echo $$ >> /root/ran1") }()
	time.Sleep(300 * time.Millisecond)
	nats.Kill(0)
	err = <-done
	f.r.JSON = false
	if err != nil {
		t.Errorf("hosts:run with NATS server 1 killed: %v\n%s", err, f.out)
	}
	if sum := lastSummary(t, f.out.String()); sum.OK != 20 {
		t.Errorf("hosts:run with NATS server 1 killed: %+v", sum)
	}
	// The server comes back (from its store) and the cluster heals: the
	// phases after run on three servers again.
	nats.Restart(t, 0)
	phase("hosts:run with a NATS server killed done")
	// A conductor killed while it holds hosts (a command that takes 2 s;
	// a2 alone of site a takes them, 8 at once); a3 starts then and takes
	// the rest: those a2 held fail naming it, the command runs nowhere
	// twice, and BOOTED_RETRY=failed runs just those, through a3.
	c2 := conductors["a2"]
	seenRuns := runsSeen("a2", "run")
	f.out.Reset()
	go func() { done <- f.r.HostsRun(ctx, env+"/workers", "sleep 2; echo $$ >> /root/ran2") }()
	for deadline := time.Now().Add(30 * time.Second); !newRun("a2", "run", seenRuns) && time.Now().Before(deadline); { // a2 starts a job of this run
		time.Sleep(20 * time.Millisecond)
	}
	c2.Process.Signal(syscall.SIGKILL)
	c2.Wait()
	conductor("a3", "a")
	err = <-done
	out := f.out.String()
	t.Logf("hosts:run with conductor a2 killed:\n%s", out)
	runs := func(h, file string) int { // the host's /root is this directory
		b, _ := os.ReadFile(f.proj.Inventory + "/" + env + "/hosts/" + h + "/fs/root/" + file)
		return strings.Count(string(b), "\n")
	}
	var held []string
	for _, h := range workers(20) {
		if n := runs(h, "ran1"); n != 1 {
			t.Errorf("%s ran the command of the run with a NATS server killed %d times", h, n)
		}
		if n := runs(h, "ran2"); n > 1 {
			t.Errorf("%s ran the command %d times", h, n)
		}
		if strings.Contains(out, "host "+h+": conductor "+conductorName(c2)) {
			held = append(held, h)
		}
	}
	if err == nil || len(held) == 0 {
		t.Errorf("hosts:run with the conductor holding workers killed: err %v, hosts failed naming it %v", err, held)
	}
	f.r.RetryFailed, f.r.JSON = true, true
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/workers", "echo again"))
	f.r.RetryFailed, f.r.JSON = false, false
	if sum := lastSummary(t, f.out.String()); sum.OK != len(held) {
		t.Errorf("BOOTED_RETRY=failed after the kill: %+v, want the %d held hosts", sum, len(held))
	}

	phase("hosts:run kill and retry done")
	// A site's host powered off, deleted and made again, by its site's
	// conductors (the controller reaches no host): its processes end, its
	// namespace goes, and the new one phones home and answers.
	count := func(what string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for name, l := range logs { // a1, a2, and a3 that took a1's place
			if strings.HasPrefix(name, "a") {
				n += strings.Count(l.String(), ": "+what+" (")
			}
		}
		return n
	}
	boots := count("host.boot on w20")
	f.must(t, f.r.ImageStop(ctx, env, "w20"))
	if pids, _ := exec.Command("ip", "netns", "pids", "booted-"+env+"-w20").Output(); len(strings.TrimSpace(string(pids))) > 0 || f.hosts(t)["w20"].State != "stopped" || count("host.poweroff on w20") != 1 {
		t.Errorf("image:stop w20: state %s, processes left %q, powered off by site a's conductors %d times; want stopped, none, once", f.hosts(t)["w20"].State, pids, count("host.poweroff on w20"))
	}
	f.must(t, f.r.ImageDel(ctx, env, "w20"))
	if _, err := os.Stat("/run/netns/booted-" + env + "-w20"); err == nil || count("host.delete on w20") != 1 {
		t.Errorf("image:del w20: its namespace is still there (%v) or it was not deleted by a conductor (%d)", err, count("host.delete on w20"))
	}
	f.must(t, f.r.ImageStart(ctx, env, "w20"))
	f.must(t, f.r.HostsLogged(ctx, env))
	if w20 := f.hosts(t)["w20"]; w20.State != "booted" && w20.State != "ready" || count("host.build on w20") < 1 || count("host.boot on w20") != boots+1 {
		t.Errorf("image:start w20 after its deletion: %s (%s), built by a conductor %d times, booted %d (was %d)", w20.State, w20.Reason, count("host.build on w20"), count("host.boot on w20"), boots)
	}
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/w20", "hostname"))
	if !strings.Contains(f.out.String(), "w20") {
		t.Errorf("hosts:run on the new w20:\n%s", f.out)
	}
	phase("a site's host stopped, deleted and made again by its conductors done")
	// The conductor booting a host killed (-9) in the middle: another
	// boots it (the job again, after its ack wait); each host ends up
	// booted once (one init), phones home and answers.
	conductor("a4", "a")
	f.waitFor(t, "a4 beating", 30*time.Second, func() bool { return beating()["a"] == 2 })
	f.must(t, f.r.ImageDel(ctx, env, "w18,w19"))
	started := make(chan error, 1)
	go func() { started <- f.r.ImageStart(ctx, env, "w18,w19") }()
	var killed string
	for deadline := time.Now().Add(30 * time.Second); killed == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		for _, name := range []string{"a3", "a4"} {
			if strings.Contains(logs[name].String(), ": host.boot on w18 (") {
				killed = name
			}
		}
		mu.Unlock()
	}
	if killed == "" {
		t.Fatal("no conductor of site a took w18's boot")
	}
	mu.Lock()
	victim := procs[killed]
	mu.Unlock()
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()
	f.must(t, <-started)
	f.must(t, f.r.HostsLogged(ctx, env))
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/w18,w19", "hostname"))
	for _, w := range []string{"w18", "w19"} {
		inits, _ := exec.Command("ip", "netns", "pids", "booted-"+env+"-"+w).Output()
		n := 0
		for _, pid := range strings.Fields(string(inits)) {
			if b, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(b)) == "tini" {
				n++
			}
		}
		if st := f.hosts(t)[w].State; n != 1 || st != "booted" && st != "ready" || !strings.Contains(f.out.String(), w) {
			t.Errorf("%s after its conductor was killed while booting it: %d inits, %s; want 1, booted, answering:\n%s", w, n, st, f.out)
		}
	}
	mu.Lock()
	t.Logf("conductor %s killed while booting w18: deliveries of w18's boot: %d", killed, strings.Count(logs["a3"].String()+logs["a4"].String(), ": host.boot on w18 ("))
	mu.Unlock()
	phase("a conductor killed while booting a host done")
	// Site b without a conductor: its host fails at once, saying what to
	// start, rather than wait out the command's timeout.
	b1 := conductors["b1"]
	b1.Process.Signal(syscall.SIGTERM)
	b1.Wait()
	f.out.Reset()
	err = f.r.HostsRun(ctx, env+"/lb1", "true")
	if err == nil || !strings.Contains(f.out.String(), "host lb1: no conductor of site b is running (start one: conductor:run "+env+" b") {
		t.Errorf("hosts:run on site b with no conductor: %v:\n%s", err, f.out)
	}
	if err := f.r.ImageStop(ctx, env, "lb1"); err == nil || !strings.Contains(err.Error(), "host lb1: no conductor of site b is running") {
		t.Errorf("image:stop of site b's host with no conductor: %v, want it refused naming lb1 and what to start", err)
	}

	// All along, the controller opened no connection to a host.
	if n := dropped(); n != "0 SYN, 0 ping" {
		t.Errorf("the controller tried to reach the hosts directly: %s (nftables' counters)", n)
	}
	// (And the rule does stop one: this process's own try is dropped.)
	if c, err := net.DialTimeout("tcp", f.hosts(t)["w1"].IP+":22", 500*time.Millisecond); err == nil {
		c.Close()
		t.Error("this process reached w1's sshd through the rule")
	}
	if n := dropped(); strings.HasPrefix(n, "0 SYN") {
		t.Errorf("a connection to w1 from here was not counted: %s", n)
	}

	// The conductor with a key the servers do not know did nothing, and
	// said why.
	mu.Lock()
	strangerLog := logs["stranger"].String()
	mu.Unlock()
	if !strings.Contains(strings.ToLower(strangerLog), "authorization") {
		t.Errorf("a conductor with an unknown key: its log does not say it was refused:\n%s", strangerLog)
	}
	for _, l := range []string{"taking the jobs", ": run on ", ": deploy on "} {
		if strings.Contains(strangerLog, l) {
			t.Errorf("a conductor with an unknown key: %q in its log:\n%s", l, strangerLog)
		}
	}
}

// prefixWriter logs a conductor's lines, named, and keeps them.
type prefixWriter struct {
	t    *testing.T
	name string
	mu   *sync.Mutex
	log  *strings.Builder
}

// natsConfig runs nats:config for env and returns the servers'
// configurations it says to start.
func (f *fixture) natsConfig(t *testing.T, env string) []string {
	t.Helper()
	f.out.Reset()
	f.must(t, f.r.NATSConfig(context.Background(), env))
	var confs []string
	for _, l := range strings.Split(f.out.String(), "\n") {
		if c, ok := strings.CutPrefix(l, "start: nats-server -c "); ok {
			confs = append(confs, c)
		}
	}
	return confs
}

func (w prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.log.Write(p)
	w.mu.Unlock()
	w.t.Logf("%s: %s", w.name, strings.TrimSpace(string(p)))
	return len(p), nil
}

// conductorName is the name a conductor process goes by (HOST-PID).
func conductorName(cmd *exec.Cmd) string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, cmd.Process.Pid)
}

func workers(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("w%d", i))
	}
	return out
}

// conductedNotes are the notes of the JSON recaps in out: by operation
// (its first two words) and host.
func conductedNotes(out string) map[string]map[string]string {
	notes := map[string]map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		var res struct {
			Operation string
			Results   []struct{ Host, Status, Note string }
		}
		if json.Unmarshal([]byte(l), &res) != nil || res.Operation == "" {
			continue
		}
		op := strings.Join(strings.Fields(res.Operation)[:min(2, len(strings.Fields(res.Operation)))], " ")
		if notes[op] == nil {
			notes[op] = map[string]string{}
		}
		for _, r := range res.Results {
			notes[op][r.Host] = r.Note
		}
	}
	return notes
}

type monitorPageHost struct {
	version string
	routed  bool
}
