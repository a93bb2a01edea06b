package conductor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/testutil"
)

// A conductor process for the kill -9 test: the test binary run again
// with BOOTED_TEST_CONDUCTOR=NAME.
func TestMain(m *testing.M) {
	if name := os.Getenv("BOOTED_TEST_CONDUCTOR"); name != "" {
		os.Exit(runTestConductor(name))
	}
	os.Exit(m.Run())
}

// runTestConductor takes site a's jobs; a job's work is a line in the
// effects file (its ID), after 300 ms; an idempotent job whose line is
// there already is not written again ("unchanged", as a deploy of a
// release a host has).
func runTestConductor(name string) int {
	nc, err := nats.Connect(os.Getenv("BOOTED_TEST_NATS"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	js, _ := jetstream.New(nc)
	effects := os.Getenv("BOOTED_TEST_EFFECTS")
	var mu sync.Mutex
	c := &Conductor{JS: js, Env: "e", Site: "a", Name: name, AckWait: 2 * time.Second, Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, name+": "+f+"\n", a...) }, Do: func(ctx context.Context, j Job) Result {
		// h00 takes 300 ms, each next host 100 ms more: when the first
		// result is in, the others are still in hand.
		var n int
		fmt.Sscanf(j.Host.Name, "h%d", &n)
		select {
		case <-time.After(time.Duration(300+100*n) * time.Millisecond):
		case <-ctx.Done():
			return Result{Status: "failed", Error: ctx.Err().Error()}
		}
		mu.Lock()
		defer mu.Unlock()
		if j.Idempotent {
			b, _ := os.ReadFile(effects)
			if strings.Contains(string(b), j.ID+"\n") {
				return Result{Status: "ok", Stdout: "unchanged"}
			}
		}
		f, err := os.OpenFile(effects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return Result{Status: "failed", Error: err.Error()}
		}
		fmt.Fprintf(f, "%s\n", j.ID)
		f.Close()
		return Result{Status: "ok", Stdout: "done"}
	}}
	if err := c.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// cluster is a NATS cluster of testutil's, ready for JetStream.
type cluster struct{ *testutil.NATSCluster }

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{testutil.StartNATS(t, n)}
	// Ready when the streams and buckets can be made with n replicas.
	js, _ := jetstream.New(c.connect(t))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := Setup(ctx, js, n)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS cluster did not become ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) url() string { return c.URL() }

func (c *cluster) connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.url(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func startConductor(t *testing.T, c *cluster, name, effects string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOOTED_TEST_CONDUCTOR="+name, "BOOTED_TEST_NATS="+c.url(), "BOOTED_TEST_EFFECTS="+effects)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func jobs(run string, n int, idempotent bool) []Job {
	var out []Job
	for i := 0; i < n; i++ {
		h := fmt.Sprintf("h%02d", i)
		out = append(out, Job{ID: run + "." + h, Run: run, Env: "e", Site: "a", Kind: "run", Host: HostRef{Name: h}, Timeout: 20 * time.Second, Idempotent: idempotent})
	}
	return out
}

func effectCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m[sc.Text()]++
	}
	return m
}

// Two conductors of site a take 20 jobs; one is killed (-9) in the middle.
// Idempotent jobs (a deploy) all end ok, each done exactly once (the
// effects file has each once); jobs that are not (a command) are never
// done twice: those the dead conductor held fail, naming the host and the
// conductor. Then one of the three NATS servers dies during a run, and the
// run finishes.
func TestConductors_KillAConductorAndAServer(t *testing.T) {
	c := startCluster(t, 3)
	nc := c.connect(t)
	js, _ := jetstream.New(nc)
	effects := filepath.Join(t.TempDir(), "effects")
	os.WriteFile(effects, nil, 0o600)
	var survivors []*exec.Cmd
	for i, idempotent := range []bool{true, false} {
		phase := time.Now()
		if i > 0 { // the last phase's survivor would share the victim's jobs
			survivors[0].Process.Signal(syscall.SIGTERM)
			survivors[0].Wait()
		}
		// The victim takes the jobs alone (16 at once); at its first
		// result it is killed and the survivor starts.
		name, survivor := fmt.Sprintf("ca%d", 2*i+1), fmt.Sprintf("ca%d", 2*i+2)
		victim := startConductor(t, c, name, effects)
		run := fmt.Sprintf("deploy%v", idempotent)
		js := jobs(run, 20, idempotent)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		var once sync.Once
		var killed string
		res, err := Dispatch(ctx, jetstreamOf(t, nc), "e", run, js, func(r Result) {
			if r.Conductor != name {
				return
			}
			once.Do(func() { // in the middle: its first result is in, others are in its hands
				victim.Process.Signal(syscall.SIGKILL)
				victim.Wait()
				killed = name
				survivors = append(survivors, startConductor(t, c, survivor, effects))
			})
		})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		counts := effectCounts(t, effects)
		var ok, failed, redelivered, again int
		for _, r := range res {
			switch {
			case r.Status == "ok":
				ok++
			case !idempotent && strings.Contains(r.Error, "host "+r.Host) && strings.Contains(r.Error, "conductor "+name):
				failed++
			default:
				t.Errorf("%s: %+v", run, r)
			}
			if r.Deliveries > 1 {
				redelivered++
			}
			if r.Again {
				again++
			}
			if counts[r.JobID] > 1 {
				t.Errorf("%s: job %s done %d times", run, r.JobID, counts[r.JobID])
			}
			if r.Status == "ok" && counts[r.JobID] != 1 {
				t.Errorf("%s: job %s ok but done %d times", run, r.JobID, counts[r.JobID])
			}
		}
		t.Logf("%s (conductor %s killed), %v: %d ok, %d failed (held by the dead conductor), %d redelivered, %d results sent again", run, killed, time.Since(phase).Round(time.Millisecond), ok, failed, redelivered, again)
		if idempotent && ok != 20 {
			t.Errorf("%s: %d of 20 ok; an idempotent job is done again after its conductor died", run, ok)
		}
		if redelivered == 0 || (!idempotent && failed == 0) {
			t.Errorf("%s: %d redelivered, %d failed: the killed conductor held no job", run, redelivered, failed)
		}
		if len(res) != 20 {
			t.Errorf("%s: %d results", run, len(res))
		}
	}

	// A NATS server dies during a run: the run finishes, every host ok,
	// none done twice. (While the streams elect new leaders a claim may go
	// unanswered for seconds; the conductor keeps the job in hand and
	// tries again. It used to hand the job back at once, and five quick
	// redeliveries spent its deliveries: under load, jobs ended with no
	// result.)
	phase := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var once sync.Once
	res, err := Dispatch(ctx, jetstreamOf(t, nc), "e", "serverdies", jobs("serverdies", 20, true), func(Result) { once.Do(func() { c.Kill(0) }) })
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	counts := effectCounts(t, effects)
	ok := 0
	for _, r := range res {
		switch {
		case counts[r.JobID] > 1:
			t.Errorf("with server n0 dead: job %s done %d times", r.JobID, counts[r.JobID])
		case r.Status == "ok":
			ok++
		default:
			t.Errorf("with server n0 dead: %+v", r)
		}
	}
	if len(res) != 20 {
		t.Errorf("with server n0 dead: %d results of 20", len(res))
	}
	t.Logf("a run of 20 jobs with NATS server n0 killed in the middle, %v: %d ok", time.Since(phase).Round(time.Millisecond), ok)
	// conductors:list's view: ca4 beats (within its 5 s beat); the
	// killed ones stopped beating.
	var names []string
	var beats []Heartbeat
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
		beats, err = Conductors(bctx, js, "e")
		bcancel()
		names = nil
		for _, b := range beats {
			if time.Since(b.Beat) < 7*time.Second {
				names = append(names, b.Name)
			}
		}
		if strings.Join(names, " ") == "ca4" {
			break
		}
	}
	if strings.Join(names, " ") != "ca4" {
		t.Errorf("conductors beating lately: %v (%+v, %v); want ca4, the survivor", names, beats, err)
	}
}

func jetstreamOf(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A job whose output is larger than a NATS message may be (the servers'
// max_payload, 1 MB by default) ends with its result, the output cut to
// fit and saying so; it neither fails nor comes back again and again.
func TestConductor_OutputLargerThanAMessage(t *testing.T) {
	c := startCluster(t, 1)
	js, _ := jetstream.New(c.connect(t))
	big := strings.Repeat("0123456789abcdef", 3<<20/16) // 3 MiB
	cd := &Conductor{JS: js, Env: "e", Site: "a", Name: "c1", AckWait: 2 * time.Second, Log: t.Logf,
		Do: func(ctx context.Context, j Job) Result {
			return Result{Status: "ok", Stdout: "first line\n" + big, Stderr: big}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cd.Run(ctx)
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	res, err := Dispatch(dctx, js, "e", "big", jobs("big", 1, false), nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("dispatch: %v, %d results", err, len(res))
	}
	r := res[0]
	limit := int(js.Conn().MaxPayload())
	if r.Status != "ok" || !strings.HasPrefix(r.Stdout, "first line\n0123") || len(r.Stdout)+len(r.Stderr) > limit ||
		!strings.Contains(r.Stdout, "output cut") || r.Deliveries != 1 {
		t.Errorf("result: status %s, error %q, %d + %d bytes of output (a message: %d), deliveries %d, stdout's end %q",
			r.Status, r.Error, len(r.Stdout), len(r.Stderr), limit, r.Deliveries, r.Stdout[max(0, len(r.Stdout)-120):])
	}
}

// When the controller stops waiting for a run (Ctrl-C, its timeout), the
// run's jobs stop: those running have their context cancelled within a
// few seconds, and those still queued are never started (they ran later,
// after the operator had given up on them).
func TestDispatch_StoppedRunStopsItsJobs(t *testing.T) {
	c := startCluster(t, 1)
	js, _ := jetstream.New(c.connect(t))
	var mu sync.Mutex
	started, stopped := map[string]bool{}, map[string]bool{}
	cd := &Conductor{JS: js, Env: "e", Site: "a", Name: "c1", Parallel: 2, AckWait: 2 * time.Second, Log: t.Logf,
		Do: func(ctx context.Context, j Job) Result {
			mu.Lock()
			started[j.Host.Name] = true
			mu.Unlock()
			<-ctx.Done() // a long command
			mu.Lock()
			stopped[j.Host.Name] = true
			mu.Unlock()
			return Result{Status: "failed", Error: ctx.Err().Error()}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cd.Run(ctx)
	run := jobs("long", 6, false)
	for i := range run {
		run[i].Timeout = 2 * time.Minute
	}
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Second) // the operator's Ctrl-C
	defer dcancel()
	res, err := Dispatch(dctx, js, "e", "long", run, nil)
	if err == nil || len(res) != 6 || res[0].Status != "failed" {
		t.Fatalf("dispatch: %v, %d results", err, len(res))
	}
	time.Sleep(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 2 || len(stopped) != 2 {
		t.Errorf("after the run was given up: %d jobs started (want the 2 that were running), %d of them stopped (want both)", len(started), len(stopped))
	}
}

// A run whose site's only conductor is killed (-9) with jobs in hand:
// nobody is left to take them (or those still queued), and the run does
// not wait for its timeout (a host's boot timeout, minutes): once the site
// has had no conductor beating for a while, its jobs fail, each naming
// its host and the site, saying what to start; those done before stay ok.
func TestDispatch_NoConductorLeftFailsItsJobs(t *testing.T) {
	c := startCluster(t, 1)
	js, _ := jetstream.New(c.connect(t))
	effects := filepath.Join(t.TempDir(), "effects")
	c1 := startConductor(t, c, "c1", effects)
	waitBeating(t, js, 1)
	run := jobs("orphaned", 30, true)
	for i := range run {
		run[i].Timeout = 5 * time.Minute
	}
	var once sync.Once
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	res, _ := Dispatch(dctx, js, "e", "orphaned", run, func(Result) { once.Do(func() { c1.Process.Kill() }) })
	took := time.Since(start)
	ok, orphaned := 0, 0
	for _, r := range res {
		switch {
		case r.Status == "ok":
			ok++
		case strings.Contains(r.Error, "host "+r.Host+": no conductor of site a is running any more") && strings.Contains(r.Error, "conductor:run e a"):
			orphaned++
		default:
			t.Errorf("%s: %s %s", r.Host, r.Status, r.Error)
		}
	}
	t.Logf("%d ok, %d failed for want of a conductor, in %v", ok, orphaned, took.Round(time.Second))
	if ok == 0 || orphaned == 0 || ok+orphaned != 30 || dctx.Err() != nil {
		t.Errorf("%d ok, %d orphaned of 30, the run's context: %v", ok, orphaned, dctx.Err())
	}
}

// waitBeating waits until n conductors of env e beat.
func waitBeating(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		beats, _ := Conductors(ctx, js, "e")
		cancel()
		if len(beats) >= n {
			return
		}
	}
	t.Fatalf("%d conductors of e did not beat within 20 s", n)
}

// A heartbeat counts for the site of its key, which a site's credentials
// alone may write, not for the site its body names: site a's conductor
// cannot keep site b looking staffed (its jobs would wait for nobody).
func TestConductors_BeatIsItsKeysSite(t *testing.T) {
	c := startCluster(t, 1)
	js, _ := jetstream.New(c.connect(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, BeatsBucket)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, h Heartbeat) {
		h.Beat = time.Now().UTC()
		b, _ := json.Marshal(h)
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	put("e.a.c1", Heartbeat{Name: "c1", Env: "e", Site: "a"})
	put("e.a.forger", Heartbeat{Name: "forger", Env: "e", Site: "b"}) // a's key, b's body
	beats, err := Conductors(ctx, js, "e")
	if err != nil {
		t.Fatal(err)
	}
	if len(beats) != 1 || beats[0].Site != "a" || beats[0].Name != "c1" {
		t.Fatalf("beats %+v; want c1 of site a alone", beats)
	}
}

// Another site's conductor cannot have a site's messages dropped: it may
// publish first, on its own subjects, under the IDs JetStream's stream-wide
// de-duplication would take for site a's result and site a's callback, and
// a's real ones still arrive (before, a's result was dropped as a repeat
// and the host failed with "no result", and a's callback was lost).
func TestDedup_AnotherSiteCannotDropAResult(t *testing.T) {
	c := startCluster(t, 1)
	js, _ := jetstream.New(c.connect(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// the forger (site b) guesses the IDs of run r1's job on h00 and of
	// the first line of a's boot log
	for _, id := range []string{"result-r1.h00", "e.a.1"} {
		if _, err := js.Publish(ctx, ResultSubject("e", "b", "r1", "h00"), []byte(`{"host":"h00","status":"ok","stdout":"forged"}`), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, CallbackSubject("e", "b"), []byte("forged"), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	cd := &Conductor{JS: js, Env: "e", Site: "a", Name: "c1", AckWait: 2 * time.Second, Log: t.Logf,
		Do: func(ctx context.Context, j Job) Result { return Result{Status: "ok", Stdout: "real"} }}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go cd.Run(rctx)
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	res, err := Dispatch(dctx, js, "e", "r1", jobs("r1", 1, false), nil)
	if err != nil || len(res) != 1 || res[0].Status != "ok" || res[0].Stdout != "real" {
		t.Errorf("site a's result after site b published under its ID: %v %+v", err, res)
	}
	if err := PublishCallback(ctx, js, "e", "a", "1", []byte("the real line")); err != nil {
		t.Fatal(err)
	}
	cbs, err := Callbacks(ctx, js, "e", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, cb := range cbs {
		found = found || (cb.Site == "a" && string(cb.Line) == "the real line")
	}
	if !found {
		t.Errorf("site a's callback was dropped: %+v", cbs)
	}
}
