// Package conductor spreads booted's work over machines through NATS
// JetStream (xCAT3's conductors over a queue): the controller publishes
// jobs, one per host, on a work-queue stream, each with an ID; the
// conductors of the job's site take them, do them with the same functions
// the in-process path uses, and publish per-host results; the controller
// waits for one result per job.
//
// Delivery is at least once; the effect is at most once, and exactly once
// while a conductor lives to ack: a job is claimed (a create-only key in
// a KV bucket) before its work starts and its result is recorded (another
// key) before it is acked. A redelivered job whose result is recorded
// gets that result again, not a second run; one claimed by a conductor
// that died before recording it fails, naming the host and the dead
// conductor, unless its kind is idempotent (Job.Idempotent), when it is
// done again. Publishing is deduplicated by JetStream's message-ID window.
package conductor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/fanout"
	"booted/internal/files"
)

// Names of the streams and buckets.
const (
	JobsStream    = "BOOTED_JOBS"
	ResultsStream = "BOOTED_RESULTS"
	ClaimsBucket  = "BOOTED_CLAIMS"
	DoneBucket    = "BOOTED_DONE"
	BeatsBucket   = "BOOTED_CONDUCTORS"
	// ArtifactsBucket is the object store of the releases a deploy's
	// conductors upload (PutArtifact, GetArtifact).
	ArtifactsBucket = "BOOTED_ARTIFACTS"
)

// Job is one unit of work on one host.
type Job struct {
	// ID is unique per job: RUN.HOST (a run's ID and the host).
	ID   string `json:"id"`
	Run  string `json:"run"`
	Env  string `json:"env"`
	Site string `json:"site"`
	// Kind says what to do: "run" (Cmd on Host).
	Kind string `json:"kind"`
	// Host is the host to work on, as the inventory knows it.
	Host HostRef `json:"host"`
	Cmd  string  `json:"cmd,omitempty"`
	// Args are the kind's own arguments (a deploy's service and release).
	Args json.RawMessage `json:"args,omitempty"`
	// Timeout bounds the work; the conductor tells JetStream it is still
	// working until then.
	Timeout time.Duration `json:"timeout"`
	// Idempotent jobs may be done again when their conductor died in the
	// middle (a deploy: the same release is not uploaded twice).
	Idempotent bool `json:"idempotent,omitempty"`
	// Stream: the job's output is sent as it comes (OutputSubject), for
	// the controller to show live; the result carries none of it.
	Stream bool `json:"stream,omitempty"`
}

// HostRef is what a conductor needs to reach a host.
type HostRef struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Port    int    `json:"port,omitempty"`
	HostKey string `json:"hostKey"`
}

// Result is one job's end.
type Result struct {
	JobID     string `json:"jobId"`
	Host      string `json:"host"`
	Conductor string `json:"conductor"`
	Status    string `json:"status"` // ok, failed, unreachable
	Stdout    string `json:"stdout,omitempty"`
	Stderr    string `json:"stderr,omitempty"`
	Error     string `json:"error,omitempty"`
	// Note is the short word of a success (what the load balancer did).
	Note    string  `json:"note,omitempty"`
	Seconds float64 `json:"seconds"`
	// Data is the kind's own outcome (a deploy's: switched, pid…), for
	// the controller to record.
	Data json.RawMessage `json:"data,omitempty"`
	// Deliveries is how many times JetStream delivered the job; Again
	// says its recorded result was sent again (a redelivery, not done
	// twice).
	Deliveries uint64 `json:"deliveries"`
	Again      bool   `json:"again,omitempty"`
}

// OutputSubject is where a streaming job's output on host goes as it
// comes (stream: "out" or "err"), under its site: core NATS, at most once.
func OutputSubject(env, site, run, host, stream string) string {
	return "booted.output." + env + "." + site + "." + run + "." + host + "." + stream
}

// JobSubject is where a site's jobs of env are published.
func JobSubject(env, site string) string { return "booted.jobs." + env + "." + site }

// ResultSubject is where a job's result is published: under its site,
// which is all a site's conductors may publish to (Permissions).
func ResultSubject(env, site, run, host string) string {
	return "booted.results." + env + "." + site + "." + run + "." + host
}

// key makes a KV key of a job (letters, digits, - _ . = /): under its env
// and site, which are all a site's conductors may write (Permissions).
func key(j Job) string {
	return j.Env + "." + j.Site + "." + strings.NewReplacer(":", "_", " ", "_").Replace(j.ID)
}

// cancelKey is the key (in the claims bucket, under the site's keys)
// that says the controller stopped waiting for run.
func cancelKey(env, site, run string) string { return env + "." + site + ".cancel." + run }

// consumerName is the durable consumer a site's conductors share.
func consumerName(env, site string) string { return "conductor_" + env + "_" + site }

// InboxPrefix is where the replies to a site's conductors come: theirs
// alone (Permissions), so no site reads another's (or the controller's).
func InboxPrefix(env, site string) string { return "_BOOTED_INBOX." + env + "." + site }

// Permissions are what a conductor of site in env may publish and
// subscribe to, for its NATS user: take its site's jobs from its site's
// consumer (made with exactly its filter), ack them, claim and record
// them under its site's keys, beat under its site, publish results (and
// its hosts' callbacks) under its site, read releases, put files in its
// site's files bucket, and hear replies on its own inbox. It cannot publish jobs,
// make or read another consumer, read another site's records or results,
// or change a stream. The controller's user may do everything.
func Permissions(env, site string) (publish, subscribe []string) {
	cons := consumerName(env, site)
	publish = []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO." + JobsStream,
		"$JS.API.CONSUMER.CREATE." + JobsStream + "." + cons + "." + JobSubject(env, site),
		"$JS.API.CONSUMER.INFO." + JobsStream + "." + cons,
		"$JS.API.CONSUMER.MSG.NEXT." + JobsStream + "." + cons,
		"$JS.ACK." + JobsStream + "." + cons + ".>",
		"booted.results." + env + "." + site + ".>",
		"booted.output." + env + "." + site + ".>",
		CallbackSubject(env, site),
		"$JS.API.STREAM.INFO." + CallbacksStream,
	}
	for _, b := range []string{ClaimsBucket, DoneBucket, BeatsBucket} {
		publish = append(publish,
			"$JS.API.STREAM.INFO.KV_"+b,
			"$KV."+b+"."+env+"."+site+".>",
			"$JS.API.DIRECT.GET.KV_"+b+".$KV."+b+"."+env+"."+site+".>")
	}
	// The releases: read only (an ordered consumer of an object's chunks,
	// its flow control).
	obj := "OBJ_" + ArtifactsBucket
	publish = append(publish,
		"$JS.API.STREAM.INFO."+obj,
		"$JS.API.DIRECT.GET."+obj+".>",
		"$JS.API.STREAM.MSG.GET."+obj,
		"$JS.API.CONSUMER.CREATE."+obj,
		"$JS.API.CONSUMER.CREATE."+obj+".>",
		"$JS.API.CONSUMER.DELETE."+obj+".>",
		"$JS.FC."+obj+".>")
	publish = append(publish, filesPermissions(env, site)...)
	return publish, []string{InboxPrefix(env, site) + ".>"}
}

// Setup makes the streams and buckets (replicated replicas times), or
// keeps them when they exist. While the cluster forms (no JetStream
// leader yet) it tries again, until ctx ends.
func Setup(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return retry(ctx, func(ctx context.Context) error { return setup(ctx, js, replicas) })
}

func setup(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: JobsStream, Subjects: []string{"booted.jobs.>"},
		Retention: jetstream.WorkQueuePolicy, Replicas: replicas, Duplicates: 10 * time.Minute, MaxAge: 24 * time.Hour}); err != nil {
		return fmt.Errorf("stream %s: %w", JobsStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: ResultsStream, Subjects: []string{"booted.results.>"},
		Retention: jetstream.LimitsPolicy, Replicas: replicas, Duplicates: 10 * time.Minute, MaxAge: time.Hour}); err != nil {
		return fmt.Errorf("stream %s: %w", ResultsStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, callbacksConfig(replicas)); err != nil {
		return fmt.Errorf("stream %s: %w", CallbacksStream, err)
	}
	for _, b := range []jetstream.KeyValueConfig{
		{Bucket: ClaimsBucket, Replicas: replicas, TTL: 24 * time.Hour},
		{Bucket: DoneBucket, Replicas: replicas, TTL: 24 * time.Hour},
		{Bucket: BeatsBucket, Replicas: replicas, TTL: 15 * time.Second},
	} {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			return fmt.Errorf("bucket %s: %w", b.Bucket, err)
		}
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: ArtifactsBucket, Replicas: replicas, TTL: 7 * 24 * time.Hour}); err != nil {
		return fmt.Errorf("object store %s: %w", ArtifactsBucket, err)
	}
	return nil
}

// PutArtifact puts the file at path in the artifacts' object store as
// name, unless an object of that name with the same SHA-256 is there.
func PutArtifact(ctx context.Context, js jetstream.JetStream, name, path, sha256hex string) error {
	return putObject(ctx, js, ArtifactsBucket, name, path, sha256hex)
}

func putObject(ctx context.Context, js jetstream.JetStream, bucket, name, path, sha256hex string) error {
	return retry(ctx, func(ctx context.Context) error {
		obs, err := js.ObjectStore(ctx, bucket)
		if err != nil {
			return err
		}
		if info, err := obs.GetInfo(ctx, name); err == nil && info.Headers.Get("Booted-Sha256") == sha256hex {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: name, Headers: nats.Header{"Booted-Sha256": []string{sha256hex}}}, f)
		return err
	})
}

// GetArtifact writes the object name to path (0755), checking that its
// SHA-256 is sha256hex; a file already there with that sum is kept. The
// jobs of one conductor fetch it once; conductors sharing a directory
// each write their own temporary file and rename it into place.
func GetArtifact(ctx context.Context, js jetstream.JetStream, name, path, sha256hex string) error {
	return getObject(ctx, js, ArtifactsBucket, name, path, sha256hex, 0o755)
}

func getObject(ctx context.Context, js jetstream.JetStream, bucket, name, path, sha256hex string, mode os.FileMode) error {
	mu, _ := fetching.LoadOrStore(path, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if sum, _ := files.Sum(path); sum == sha256hex {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".part-*")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	err = retry(ctx, func(ctx context.Context) error {
		obs, err := js.ObjectStore(ctx, bucket)
		if err != nil {
			return err
		}
		return obs.GetFile(ctx, name, tmp.Name())
	})
	if err != nil {
		return fmt.Errorf("%s from the object store %s: %w", name, bucket, err)
	}
	if got, _ := files.Sum(tmp.Name()); got != sha256hex {
		return fmt.Errorf("%s from the object store %s: sha256 %s, want %s (not used)", name, bucket, got, sha256hex)
	}
	if err := os.Chmod(tmp.Name(), mode&os.ModePerm); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// fetching holds a lock per artifact path being fetched.
var fetching sync.Map

// Conductor takes the jobs of one site of one environment.
type Conductor struct {
	JS   jetstream.JetStream
	Env  string
	Site string
	// Name identifies this conductor (in claims, results, heartbeats).
	Name string
	// Do does a job and says how it ended (Status, Stdout, Stderr, Error).
	Do func(ctx context.Context, j Job) Result
	// MaxDeliver bounds the deliveries of a job (default 5).
	MaxDeliver int
	// Parallel is how many jobs it does at once (default fanout.DefaultParallel, as BOOTED_PARALLEL's).
	Parallel int
	// AckWait is how long JetStream waits for a word from the conductor
	// holding a job before handing it to another (default 10 s; the
	// conductor says it is still working three times per AckWait).
	AckWait time.Duration
	// Log, if set, is told what happens.
	Log func(format string, args ...any)

	pending sync.Map // job ID → Result done here, not recorded yet
}

// Heartbeat is a conductor's entry in BeatsBucket.
type Heartbeat struct {
	Name  string    `json:"name"`
	Env   string    `json:"env"`
	Site  string    `json:"site"`
	Since time.Time `json:"since"`
	Beat  time.Time `json:"beat"`
	Done  int       `json:"done"`
}

func (c *Conductor) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// Run takes jobs until ctx ends.
func (c *Conductor) Run(ctx context.Context) error {
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.Parallel == 0 {
		c.Parallel = fanout.DefaultParallel
	}
	if c.AckWait == 0 {
		c.AckWait = 10 * time.Second
	}
	// The streams and buckets are the controller's to make (Setup): a
	// conductor waits for them, saying so once.
	var claims, done, beats jetstream.KeyValue
	said := false
	err := retry(ctx, func(ctx context.Context) error {
		_, err := c.JS.Stream(ctx, JobsStream)
		if err == nil {
			claims, err = c.JS.KeyValue(ctx, ClaimsBucket)
		}
		if err == nil {
			done, err = c.JS.KeyValue(ctx, DoneBucket)
		}
		if err == nil {
			beats, err = c.JS.KeyValue(ctx, BeatsBucket)
		}
		if err != nil && !said && (errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)) {
			said = true
			c.logf("waiting for the controller to make the streams (any target that uses the sites does, or conductors:list)")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("conductor %s: streams: %w", c.Name, err)
	}
	var cons jetstream.Consumer
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = retry(cctx, func(ctx context.Context) (err error) {
		cons, err = c.JS.CreateOrUpdateConsumer(ctx, JobsStream, jetstream.ConsumerConfig{
			Durable: consumerName(c.Env, c.Site), FilterSubject: JobSubject(c.Env, c.Site),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, MaxAckPending: 1000,
		})
		return err
	})
	cancel()
	if err != nil {
		return fmt.Errorf("conductor %s: the consumer of site %s's jobs: %w (are its credentials site %s's?)", c.Name, c.Site, err, c.Site)
	}
	c.logf("taking the jobs of site %s of %s", c.Site, c.Env)
	hb := Heartbeat{Name: c.Name, Env: c.Env, Site: c.Site, Since: time.Now().UTC()}
	var count atomic.Int64 // jobs done here
	beat := func() {
		hb.Beat, hb.Done = time.Now().UTC(), int(count.Load())
		b, _ := json.Marshal(hb)
		beats.Put(ctx, c.Env+"."+c.Site+"."+c.Name, b)
	}
	beat()
	go every(ctx, 5*time.Second, beat)
	// A job is fetched only when a slot is free for it: none waits here
	// while another conductor could do it.
	var busy atomic.Int64
	freed := make(chan struct{}, c.Parallel)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		free := c.Parallel - int(busy.Load())
		if free == 0 {
			select {
			case <-freed:
			case <-ctx.Done():
			}
			continue
		}
		batch, err := cons.Fetch(free, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.logf("fetch: %v", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for m := range batch.Messages() {
			busy.Add(1)
			wg.Add(1)
			go func(m jetstream.Msg) {
				defer func() {
					busy.Add(-1)
					wg.Done()
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
				if c.handle(ctx, m, claims, done) {
					count.Add(1)
				}
			}(m)
		}
	}
	wg.Wait() // the jobs in hand end (their work is cancelled)
	beats.Delete(context.Background(), c.Env+"."+c.Site+"."+c.Name)
	return nil
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// handle does one delivery of a job; it reports whether this conductor
// did the job's work.
func (c *Conductor) handle(ctx context.Context, m jetstream.Msg, claims, done jetstream.KeyValue) bool {
	var j Job
	if err := json.Unmarshal(m.Data(), &j); err != nil || j.ID == "" {
		c.logf("a job that is not one (%v): dropped", err)
		m.Term()
		return false
	}
	meta, _ := m.Metadata()
	deliveries := uint64(1)
	if meta != nil {
		deliveries = meta.NumDelivered
	}
	k := key(j)
	// From here until it ends, JetStream is told the job is in hand.
	progress, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	go every(progress, c.AckWait/3, func() { m.InProgress() })
	// While the cluster elects leaders (a server lost), reading the record
	// or claiming may go unanswered for a while: each is tried again, the
	// job kept in hand (a redelivery now would spend its deliveries), for
	// as long as the job may take; then it is handed back, after a wait.
	said := false
	transient := func(what string, err error) {
		if !said {
			said = true
			c.logf("job %s: %s: %v (trying again: the cluster may be electing a leader)", j.ID, what, err)
		}
	}
	tctx, tcancel := context.WithTimeout(ctx, j.Timeout)
	defer tcancel()
	var rec jetstream.KeyValueEntry
	err := retry(tctx, func(ctx context.Context) error {
		e, err := done.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return nil
		case err != nil:
			transient("its record", err)
			return err
		}
		rec = e
		return nil
	})
	if err == nil && rec != nil { // done already (this delivery is a redelivery): its result again
		var r Result
		if json.Unmarshal(rec.Value(), &r) == nil {
			r.Again, r.Deliveries = true, deliveries
			c.publish(ctx, j, r)
			m.Ack()
			return false
		}
	}
	exists := false
	if err == nil {
		err = retry(tctx, func(ctx context.Context) error {
			_, err := claims.Create(ctx, k, []byte(c.Name))
			if errors.Is(err, jetstream.ErrKeyExists) {
				exists = true
				return nil
			}
			if err != nil {
				transient("claim", err)
			}
			return err
		})
	}
	if err != nil {
		if ctx.Err() == nil {
			c.logf("job %s: %v: handed back", j.ID, err)
			m.NakWithDelay(c.AckWait)
		}
		return false
	}
	if exists {
		prev, _ := claims.Get(ctx, k)
		owner := ""
		if prev != nil {
			owner = string(prev.Value())
		}
		if owner == c.Name { // this conductor did it and could not record it yet: record it now
			if r, ok := c.pending.Load(j.ID); ok {
				res := r.(Result)
				res.Deliveries = deliveries
				c.finish(ctx, m, j, res, done)
				return false
			}
		}
		if !j.Idempotent {
			r := Result{JobID: j.ID, Host: j.Host.Name, Conductor: c.Name, Status: "failed", Deliveries: deliveries,
				Error: fmt.Sprintf("host %s: conductor %s took this job and stopped before saying how it ended; not run again (it may or may not have run)", j.Host.Name, owner)}
			c.finish(ctx, m, j, r, done)
			return false
		}
		claims.Put(ctx, k, []byte(c.Name)) // an idempotent job, done again here
	}
	// A run the controller stopped waiting for (Ctrl-C, its timeout) is
	// not started, and stopped where it runs (looked for every second).
	ck := cancelKey(j.Env, j.Site, j.Run)
	given := func(ctx context.Context) bool { _, err := claims.Get(ctx, ck); return err == nil }
	givenUp := Result{JobID: j.ID, Host: j.Host.Name, Conductor: c.Name, Status: "failed", Deliveries: deliveries,
		Error: fmt.Sprintf("host %s: not run: the controller stopped waiting for run %s (Ctrl-C or its timeout)", j.Host.Name, j.Run)}
	if given(ctx) {
		c.finish(ctx, m, j, givenUp, done)
		return false
	}
	c.logf("job %s: %s on %s (delivery %d)", j.ID, j.Kind, j.Host.Name, deliveries)
	wctx, cancel := context.WithTimeout(ctx, j.Timeout)
	defer cancel()
	var stoppedHere atomic.Bool
	go every(wctx, time.Second, func() {
		if given(wctx) {
			stoppedHere.Store(true)
			cancel()
		}
	})
	start := time.Now()
	r := c.Do(wctx, j)
	if ctx.Err() != nil { // stopping: no result; the job goes to another conductor
		return false
	}
	if stoppedHere.Load() {
		c.logf("job %s: stopped: the controller stopped waiting for run %s", j.ID, j.Run)
		r.Status, r.Error = "failed", fmt.Sprintf("host %s: stopped: the controller stopped waiting for run %s (Ctrl-C or its timeout)", j.Host.Name, j.Run)
	}
	r.JobID, r.Host, r.Conductor, r.Deliveries = j.ID, j.Host.Name, c.Name, deliveries
	r.Seconds = time.Since(start).Round(time.Millisecond).Seconds()
	c.finish(ctx, m, j, r, done)
	return true
}

// finish records r, publishes it and acks the job, in that order. Until
// it is recorded, r is kept here: a redelivery to this conductor records
// it then, rather than doing the work again.
func (c *Conductor) finish(ctx context.Context, m jetstream.Msg, j Job, r Result, done jetstream.KeyValue) {
	r = fit(r, int(c.JS.Conn().MaxPayload()))
	c.pending.Store(j.ID, r)
	b, _ := json.Marshal(r)
	// While the cluster elects new leaders (a server lost), the record
	// waits a little; the job is acked only once it is recorded.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := retry(rctx, func(ctx context.Context) error { _, err := done.Put(ctx, key(j), b); return err }); err != nil {
		c.logf("job %s: record: %v (not acked: it comes back)", j.ID, err)
		return
	}
	c.pending.Delete(j.ID)
	c.publish(rctx, j, r)
	m.Ack()
}

// fit cuts r's output so that r fits in a NATS message of limit bytes
// (the servers' max_payload), saying so at the end of each cut stream; a
// result that cannot fit even without output fails, saying why.
func fit(r Result, limit int) Result {
	const room = 2048 // the message's headers and a key's record
	size := func(r Result) int { b, _ := json.Marshal(r); return len(b) }
	total := size(r)
	if limit <= 0 || total <= limit-room {
		return r
	}
	out, errs := r.Stdout, r.Stderr
	r.Stdout, r.Stderr = "", ""
	budget := limit - room - size(r) - 256
	if budget < 0 {
		return Result{JobID: r.JobID, Host: r.Host, Conductor: r.Conductor, Status: "failed", Seconds: r.Seconds, Deliveries: r.Deliveries,
			Error: fmt.Sprintf("host %s: the job's result (%d bytes) does not fit in a NATS message (max_payload %d)", r.Host, total, limit)}
	}
	cut := func(s string, n int) string {
		if len(s) <= n {
			return s
		}
		return strings.ToValidUTF8(s[:n], "") + fmt.Sprintf("\n[booted: output cut at %d of %d bytes to fit a NATS message (max_payload %d)]\n", n, len(s), limit)
	}
	// Each stream gets half the budget, the smaller one's unused half going
	// to the other; JSON escapes may take more room: halve until it fits.
	for share := budget; share > 0; share /= 2 {
		n := share / 2
		if len(errs) < n {
			r.Stdout, r.Stderr = cut(out, share-len(errs)), errs
		} else if len(out) < n {
			r.Stdout, r.Stderr = out, cut(errs, share-len(out))
		} else {
			r.Stdout, r.Stderr = cut(out, n), cut(errs, n)
		}
		if size(r) <= limit-room {
			return r
		}
	}
	r.Stdout, r.Stderr = "", ""
	return r
}

// msgID names a message for JetStream's de-duplication: what it is (a
// job's result, a line's place in a boot log) and the hash of its body.
// The de-duplication window is the stream's, shared by every site: with an
// ID another site's conductors could guess, they could publish first under
// it and have the real message dropped as a repeat; with the body's hash
// in it, only the same message is a repeat.
func msgID(what string, body []byte) string {
	sum := sha256.Sum256(body)
	return what + "-" + hex.EncodeToString(sum[:16])
}

func (c *Conductor) publish(ctx context.Context, j Job, r Result) {
	b, _ := json.Marshal(r)
	err := retry(ctx, func(ctx context.Context) error { // its ID makes a second one a no-op
		_, err := c.JS.Publish(ctx, ResultSubject(j.Env, j.Site, j.Run, j.Host.Name), b, jetstream.WithMsgID(msgID("result-"+j.ID, b)))
		return err
	})
	if err != nil {
		c.logf("job %s: publish result: %v", j.ID, err)
	}
}

// stopRun tells the conductors of the sites of run's jobs without a result
// that the controller stopped waiting: they start none of them and stop
// those they run.
func stopRun(js jetstream.JetStream, env, run string, jobs []Job, got map[string]Result) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, ClaimsBucket)
	if err != nil {
		return
	}
	sites := map[string]bool{}
	for _, j := range jobs {
		if _, ok := got[j.Host.Name]; !ok && !sites[j.Site] {
			sites[j.Site] = true
			retry(ctx, func(ctx context.Context) error {
				_, err := kv.Put(ctx, cancelKey(env, j.Site, run), []byte("stopped"))
				return err
			})
		}
	}
}

// Dispatch publishes jobs (deduplicated by ID) and returns their results
// as they come, one per job, until all came or ctx ended (then the jobs
// without a result are failed naming their host).
func Dispatch(ctx context.Context, js jetstream.JetStream, env, run string, jobs []Job, onResult func(Result)) ([]Result, error) {
	want := map[string]Job{}
	for _, j := range jobs {
		want[j.Host.Name] = j
	}
	// A durable consumer of this run's results, replicated as the stream
	// is, so that it outlives a server (an ordered consumer's reset
	// retries for ever once its server is gone); deleted at the end.
	name := "results_" + env + "_" + run
	var cons jetstream.Consumer
	err := retry(ctx, func(ctx context.Context) (err error) {
		cons, err = js.CreateOrUpdateConsumer(ctx, ResultsStream, jetstream.ConsumerConfig{Durable: name,
			FilterSubject: "booted.results." + env + ".*." + run + ".>", AckPolicy: jetstream.AckNonePolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 10 * time.Minute})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("results of run %s: %w", run, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), attempt)
		defer cancel()
		js.DeleteConsumer(dctx, ResultsStream, name)
	}()
	for _, j := range jobs {
		b, _ := json.Marshal(j)
		err := retry(ctx, func(ctx context.Context) error { // the ID makes a second publish a no-op
			_, err := js.Publish(ctx, JobSubject(j.Env, j.Site), b, jetstream.WithMsgID(j.ID))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("host %s: publish job %s: %w", j.Host.Name, j.ID, err)
		}
	}
	got := map[string]Result{}
	gone := orphans(env, want, got)
	for len(got) < len(want) && ctx.Err() == nil {
		if lost := gone(ctx, js); len(lost) > 0 {
			var stop []Job
			for _, r := range lost {
				got[r.Host] = r
				stop = append(stop, want[r.Host])
				if onResult != nil {
					onResult(r)
				}
			}
			stopRun(js, env, run, stop, nil) // a conductor started later does not take them
			continue
		}
		batch, err := cons.Fetch(len(want)-len(got), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for m := range batch.Messages() {
			var r Result
			if json.Unmarshal(m.Data(), &r) == nil {
				// A result counts only from the job's own site (another
				// site's conductors cannot publish there).
				if j, ok := want[r.Host]; ok && m.Subject() == ResultSubject(env, j.Site, run, r.Host) {
					if _, seen := got[r.Host]; !seen {
						got[r.Host] = r
						if onResult != nil {
							onResult(r)
						}
					}
				}
			}
		}
	}
	if len(got) < len(want) { // given up (Ctrl-C, the timeout): the run stops where it runs
		stopRun(js, env, run, jobs, got)
	}
	out := make([]Result, 0, len(jobs))
	for _, j := range jobs {
		r, ok := got[j.Host.Name]
		if !ok {
			r = Result{JobID: j.ID, Host: j.Host.Name, Status: "failed", Error: fmt.Sprintf("host %s: no result from site %s's conductors: %v", j.Host.Name, j.Site, ctx.Err())}
		}
		out = append(out, r)
	}
	return out, ctx.Err()
}

// orphanAfter is how long a site may have no conductor beating (its
// heartbeats expire BeatsBucket's TTL after the last) before the jobs of
// the site a run waits for fail: none is left to do them.
const orphanAfter = 15 * time.Second

// orphans returns a check, made every few seconds, that fails the jobs of
// want without a result (in got) whose site has had no conductor beating
// for orphanAfter: a conductor killed with them in hand and no other of
// its site (their deliveries would wait for one until the run's timeout,
// the boot timeout of a host's build: minutes).
func orphans(env string, want map[string]Job, got map[string]Result) func(context.Context, jetstream.JetStream) []Result {
	seen := map[string]time.Time{} // when each site last had a conductor
	start := time.Now()            // (one beat when the run began: the caller checks)
	next := start.Add(orphanAfter / 3)
	return func(ctx context.Context, js jetstream.JetStream) []Result {
		now := time.Now()
		if now.Before(next) {
			return nil
		}
		next = now.Add(orphanAfter / 3)
		cctx, cancel := context.WithTimeout(ctx, attempt)
		beats, err := Conductors(cctx, js, env)
		cancel()
		if err != nil {
			return nil // the cluster did not say: nothing is concluded
		}
		for _, b := range beats {
			seen[b.Site] = now
		}
		var lost []Result
		for host, j := range want {
			if _, ok := got[host]; ok {
				continue
			}
			if _, ok := seen[j.Site]; !ok {
				seen[j.Site] = start
			}
			if now.Sub(seen[j.Site]) >= orphanAfter {
				lost = append(lost, Result{JobID: j.ID, Host: host, Status: "failed",
					Error: fmt.Sprintf("host %s: no conductor of site %s is running any more (none for %v): its job was not done, or not finished; start one (conductor:run %s %s) and try again", host, j.Site, orphanAfter, env, j.Site)})
			}
		}
		return lost
	}
}

// attempt bounds one request to the cluster: while a server is lost and
// its streams elect new leaders (a few seconds), a request may go
// unanswered; it is made again rather than waited for.
const attempt = 3 * time.Second

// retry calls fn with attempt-long contexts until it succeeds or ctx ends.
func retry(ctx context.Context, fn func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Conductors returns the conductors beating for env (their last beat is
// at most the bucket's TTL old).
func Conductors(ctx context.Context, js jetstream.JetStream, env string) ([]Heartbeat, error) {
	// The keys from the bucket's stream's subjects (KeyValue.ListKeys asks
	// for a consumer nats-server 2.9 does not give and lists none there).
	var beats jetstream.KeyValue
	var subjects map[string]uint64
	err := retry(ctx, func(ctx context.Context) error {
		var err error
		if beats, err = js.KeyValue(ctx, BeatsBucket); err != nil {
			return err
		}
		st, err := js.Stream(ctx, "KV_"+BeatsBucket)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("$KV."+BeatsBucket+"."+env+".>"))
		if err != nil {
			return err
		}
		subjects = info.State.Subjects
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Heartbeat
	for subj := range subjects {
		k := strings.TrimPrefix(subj, "$KV."+BeatsBucket+".")
		e, err := beats.Get(ctx, k)
		if err != nil {
			continue // deleted since
		}
		var h Heartbeat
		if json.Unmarshal(e.Value(), &h) != nil {
			continue
		}
		// A beat's site is its key's (ENV.SITE.NAME), which is all a
		// site's credentials may write (Permissions), not what its body
		// says: another site's conductor cannot beat for it.
		if f := strings.SplitN(k, ".", 3); len(f) != 3 || f[0] != env || h.Env != env || h.Site != f[1] || h.Name != f[2] {
			continue
		}
		out = append(out, h)
	}
	return out, nil
}
