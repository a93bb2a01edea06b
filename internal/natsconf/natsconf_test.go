package natsconf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"booted/internal/conductor"
	"booted/internal/testutil"
)

// trust is a server started from the files Make wrote.
type trust struct {
	f    Files
	url  string
	errs chan error // the clients' asynchronous errors (permission violations)
}

func start(t *testing.T) *trust {
	t.Helper()
	testutil.RequireCommands(t, "nats-server")
	f := Files{Dir: filepath.Join(t.TempDir(), "nats")}
	url := "tls://" + testutil.FreePort(t)
	confs, err := Make(f, Spec{Env: "e", URLs: []string{url}, Routes: []string{"nats-route://" + testutil.FreePort(t)}, Sites: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.StartNATSFrom(t, confs, []string{url})
	addr := strings.TrimPrefix(url, "tls://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) { // listening
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(strings.TrimSuffix(confs[0], ".conf") + ".log")
			t.Fatalf("nats-server -c %s: not listening on %s after 10 s:\n%s", confs[0], addr, log)
		}
	}
	return &trust{f: f, url: url, errs: make(chan error, 100)}
}

func (tr *trust) connect(t *testing.T, seed string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	opts = append(opts, nats.Timeout(3*time.Second), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case tr.errs <- err:
		default:
		}
	}))
	if seed != "" {
		o, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(tr.url, opts...)
	if nc != nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// The files: seeds and private keys 0600, no seed in a server's
// configuration; made again, the keys stay the same.
func TestMake_FilesAndModes(t *testing.T) {
	f := Files{Dir: filepath.Join(t.TempDir(), "nats")}
	spec := Spec{Env: "e", URLs: []string{"tls://127.0.0.1:4222", "tls://127.0.0.1:4223"}, Sites: []string{"a"}}
	confs, err := Make(f, spec)
	if err != nil {
		t.Fatal(err)
	}
	seedA, _ := os.ReadFile(f.Site("a"))
	for _, p := range []string{f.Controller(), f.Site("a"), filepath.Join(f.Dir, "ca-key.pem"), filepath.Join(f.Dir, "server-key.pem"), confs[0]} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", p, err)
		}
	}
	conf, _ := os.ReadFile(confs[1])
	if strings.Contains(string(conf), "SU") && strings.Contains(string(conf), string(seedA)) {
		t.Errorf("a server's configuration holds a seed:\n%s", conf)
	}
	// The default route is the client port + 2000; the peer is the other.
	if !strings.Contains(string(conf), `listen: "127.0.0.1:6223"`) || !strings.Contains(string(conf), `"nats-route://127.0.0.1:6222"`) {
		t.Errorf("server 2's cluster: want listen 127.0.0.1:6223 and route to 6222:\n%s", conf)
	}
	if _, err := Make(f, spec); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.Site("a")); string(again) != string(seedA) {
		t.Error("made again, site a's seed changed: its conductors would be locked out")
	}
	if _, err := Make(f, Spec{Env: "e", URLs: []string{"tls://127.0.0.1"}}); err == nil || !strings.Contains(err.Error(), "tls://127.0.0.1") {
		t.Errorf("a URL without a port: %v, want it named", err)
	}
}

// Against a server started from Make's files: only clients with the CA
// and a key of the configuration get in; a site's conductors take only
// their site's jobs, cannot publish jobs or read other results, and a
// result they forge for another site's host is not taken.
func TestMake_ASiteTakesOnlyItsJobs(t *testing.T) {
	tr := start(t)
	ca := nats.RootCAs(tr.f.CA())

	// Who gets in.
	ctl, err := tr.connect(t, tr.f.Controller(), ca)
	if err != nil {
		t.Fatalf("the controller, with its seed and the CA: %v", err)
	}
	if _, err := tr.connect(t, tr.f.Controller()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want the server's certificate refused", err)
	}
	if _, err := tr.connect(t, "", ca); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("without a key: %v, want an authorization violation", err)
	}
	stranger, _ := nkeys.CreateUser()
	seed, _ := stranger.Seed()
	strangerSeed := filepath.Join(t.TempDir(), "stranger.nk")
	os.WriteFile(strangerSeed, seed, 0o600)
	if _, err := tr.connect(t, strangerSeed, ca); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("with a key not in the configuration: %v, want an authorization violation", err)
	}

	js, _ := jetstream.New(ctl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := conductor.Setup(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	siteConn := func(site string) (*nats.Conn, jetstream.JetStream) {
		nc, err := tr.connect(t, tr.f.Site(site), ca, nats.CustomInboxPrefix(conductor.InboxPrefix("e", site)))
		if err != nil {
			t.Fatalf("site %s's conductor: %v", site, err)
		}
		sjs, _ := jetstream.New(nc)
		return nc, sjs
	}
	bnc, bjs := siteConn("b")

	// Site b's key cannot take site a's jobs: no consumer for it.
	rogue := &conductor.Conductor{JS: bjs, Env: "e", Site: "a", Name: "rogue", Do: func(context.Context, conductor.Job) conductor.Result {
		t.Error("site b's key took a job of site a")
		return conductor.Result{Status: "ok"}
	}}
	rctx, rcancel := context.WithTimeout(ctx, 4*time.Second) // refused: it never gets a consumer
	err = rogue.Run(rctx)
	rcancel()
	if err == nil || !strings.Contains(err.Error(), "site a") {
		t.Errorf("a conductor with site b's key taking site a's jobs: %v, want refused naming site a", err)
	}
	// Nor publish a job, nor read results.
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = bjs.Publish(pctx, conductor.JobSubject("e", "a"), []byte(`{"id":"x"}`))
	pcancel()
	if err == nil {
		t.Error("site b's key published a job")
	}
	if _, err := bnc.SubscribeSync("booted.results.>"); err == nil {
		if !waitErr(tr.errs, "subscription to \"booted.results.>\"") {
			t.Error("site b's key subscribed to every result, and no permissions violation came")
		}
	}

	// The real conductors of a and b; b forges a result for a's h00 first.
	_, ajs := siteConn("a")
	var wg sync.WaitGroup
	rctx, rcancel = context.WithCancel(ctx)
	defer func() { rcancel(); wg.Wait() }()
	for site, sjs := range map[string]jetstream.JetStream{"a": ajs, "b": bjs} {
		c := &conductor.Conductor{JS: sjs, Env: "e", Site: site, Name: "c" + site, Log: t.Logf, Do: func(_ context.Context, j conductor.Job) conductor.Result {
			return conductor.Result{Status: "ok", Stdout: "done by site " + site}
		}}
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(rctx) }()
	}
	forged, _ := json.Marshal(conductor.Result{JobID: "r1.h00", Host: "h00", Conductor: "ca", Status: "ok", Stdout: "forged"})
	if _, err := bjs.Publish(ctx, conductor.ResultSubject("e", "b", "r1", "h00"), forged); err != nil {
		t.Fatal(err)
	}
	var jobs []conductor.Job
	for _, h := range []struct{ name, site string }{{"h00", "a"}, {"h01", "a"}, {"h02", "b"}} {
		jobs = append(jobs, conductor.Job{ID: "r1." + h.name, Run: "r1", Env: "e", Site: h.site, Kind: "run", Host: conductor.HostRef{Name: h.name}, Timeout: 10 * time.Second})
	}
	res, err := conductor.Dispatch(ctx, js, "e", "r1", jobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if want := "done by site " + jobs[i].Site; r.Status != "ok" || r.Stdout != want || r.Conductor != "c"+jobs[i].Site {
			t.Errorf("%s: %+v, want ok %q by c%s", r.Host, r, want, jobs[i].Site)
		}
	}
}

// A release the controller puts in the object store: a site's key reads
// it (its sum checked), and cannot put one.
func TestMake_ASiteReadsReleases(t *testing.T) {
	ctx, js, bjs := start(t).controllerAndSiteB(t)
	dir := t.TempDir()
	rel := filepath.Join(dir, "hello")
	body := strings.Repeat("release bytes ", 100000) // 1.4 MB: many chunks
	sumHex := writeSummed(t, rel, body)
	if err := conductor.PutArtifact(ctx, js, "hello-v1", rel, sumHex); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dir, "b", "hello")
	if err := conductor.GetArtifact(ctx, bjs, "hello-v1", got, sumHex); err != nil {
		t.Fatalf("site b reading a release: %v", err)
	}
	if b, _ := os.ReadFile(got); string(b) != body {
		t.Errorf("site b's copy differs (%d bytes of %d)", len(b), len(body))
	}
	if err := conductor.GetArtifact(ctx, bjs, "hello-v1", filepath.Join(dir, "b", "other"), strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("a release whose sum is not the job's: %v, want refused naming its sha256", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 4*time.Second)
	defer pcancel()
	if err := conductor.PutArtifact(pctx, bjs, "hello-v1", filepath.Join(dir, "b", "hello"), "x"); err == nil {
		t.Error("site b's key put a release")
	}
}

func waitErr(errs chan error, want string) bool {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// A file a site's conductor brings back from a host (hosts:get, too large
// for a result) goes into its site's files bucket: the controller gets it
// (its sum checked) and deletes it there; a site cannot put one in
// another site's bucket.
func TestMake_ASitePutsFilesInItsOwnBucket(t *testing.T) {
	ctx, js, bjs := start(t).controllerAndSiteB(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "big")
	body := strings.Repeat("host bytes ", 200000) // 2.2 MB: many chunks
	sumHex := writeSummed(t, src, body)
	if err := conductor.PutFile(ctx, bjs, "e", "b", "run1.w3", src, sumHex); err != nil {
		t.Fatalf("site b putting a file in its bucket: %v", err)
	}
	got := filepath.Join(dir, "got", "big")
	if err := conductor.GetFile(ctx, js, "e", "b", "run1.w3", got, sumHex, 0o640); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); string(b) != body {
		t.Errorf("the controller's copy differs (%d bytes of %d)", len(b), len(body))
	}
	if obs, err := js.ObjectStore(ctx, conductor.FilesBucket("e", "b")); err != nil {
		t.Fatal(err)
	} else if _, err := obs.GetInfo(ctx, "run1.w3"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("the file is still in site b's bucket after the controller got it: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 4*time.Second)
	defer pcancel()
	if err := conductor.PutFile(pctx, bjs, "e", "a", "run1.w1", src, sumHex); err == nil {
		t.Error("site b's key put a file in site a's bucket")
	}
}

// A file the controller sends a site's hosts (hosts:put) goes into that
// site's files bucket alone: site b's key reads what was put for b (its
// sum checked), and not what was put for a (before, hosts:put used the
// releases' bucket, which every site reads).
func TestMake_ASiteReadsOnlyItsOwnPuts(t *testing.T) {
	ctx, js, bjs := start(t).controllerAndSiteB(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "motd")
	body := strings.Repeat("for the hosts ", 100000)
	sumHex := writeSummed(t, src, body)
	for _, site := range []string{"a", "b"} {
		if err := conductor.PutFile(ctx, js, "e", site, "file-"+sumHex, src, sumHex); err != nil {
			t.Fatal(err)
		}
	}
	got := filepath.Join(dir, "b", "motd")
	if err := conductor.ReadFile(ctx, bjs, "e", "b", "file-"+sumHex, got, sumHex, 0o640); err != nil {
		t.Fatalf("site b reading what was put for it: %v", err)
	}
	if b, _ := os.ReadFile(got); string(b) != body {
		t.Errorf("site b's copy differs (%d bytes of %d)", len(b), len(body))
	}
	pctx, pcancel := context.WithTimeout(ctx, 4*time.Second)
	defer pcancel()
	if err := conductor.ReadFile(pctx, bjs, "e", "a", "file-"+sumHex, filepath.Join(dir, "b", "stolen"), sumHex, 0o600); err == nil {
		t.Error("site b's key read a file put for site a")
	}
	if _, err := os.Stat(filepath.Join(dir, "b", "stolen")); err == nil {
		t.Error("site b's key wrote a file put for site a")
	}
}

// controllerAndSiteB connects as the controller (the streams and buckets
// set up, env e's sites a and b too) and as site b's conductor; ctx bounds
// the test.
func (tr *trust) controllerAndSiteB(t *testing.T) (ctx context.Context, js, bjs jetstream.JetStream) {
	t.Helper()
	ca := nats.RootCAs(tr.f.CA())
	ctl, err := tr.connect(t, tr.f.Controller(), ca)
	if err != nil {
		t.Fatal(err)
	}
	js, _ = jetstream.New(ctl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := conductor.Setup(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"a", "b"} {
		if err := conductor.SetupSite(ctx, js, "e", site, 1); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := tr.connect(t, tr.f.Site("b"), ca, nats.CustomInboxPrefix(conductor.InboxPrefix("e", "b")))
	if err != nil {
		t.Fatal(err)
	}
	bjs, _ = jetstream.New(nc)
	return ctx, js, bjs
}

// writeSummed writes body to path and returns its SHA-256 (hex).
func writeSummed(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}
