package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
)

// conn is a host during a step: its name, and the note set on it.
type conn struct {
	fleet.Conn // any other call panics: the halves here make none
	h          inventory.Host
	note       string
}

func (c *conn) Host() inventory.Host { return c.h }
func (c *conn) Note(msg string)      { c.note = msg }

type args struct {
	N int `json:"n"`
}

var doubled = jobs.Define("test.double", true, func(_ jobs.Worker, _ context.Context, _ jetstream.JetStream, _ conductor.Job, a args) (jobs.Host[int], error) {
	if a.N < 0 {
		return nil, errors.New("n is negative")
	}
	return func(context.Context, fleet.Conn) (int, error) { return 2 * a.N, nil }, nil
})

func TestDefine_OneKindOneName(t *testing.T) {
	if doubled.Name() != "test.double" {
		t.Fatalf("name %q", doubled.Name())
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "test.double defined twice") {
			t.Fatalf("a kind defined twice: recovered %v, want a panic naming it", r)
		}
	}()
	jobs.Define("test.double", false, func(jobs.Worker, context.Context, jetstream.JetStream, conductor.Job, struct{}) (jobs.Host[int], error) {
		return nil, nil
	})
}

// A conductor makes the host half from the job's arguments, as the
// controller sent them; bad arguments are refused naming the kind.
func TestLookup_MakesFromArgs(t *testing.T) {
	mk, ok := jobs.Lookup("test.double")
	if !ok {
		t.Fatalf("test.double not found among %v", jobs.Names())
	}
	o, _ := doubled.Halves(jobs.Op{}, args{N: 21}, nil, nil)
	host, err := mk(nil, context.Background(), nil, *o.Job)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := host(context.Background(), &conn{}); err != nil || got != 42 {
		t.Fatalf("host half: %v, %v; want 42", got, err)
	}
	if !o.Job.Idempotent || o.Job.Kind != "test.double" {
		t.Fatalf("job %+v", o.Job)
	}
	if _, err := mk(nil, context.Background(), nil, conductor.Job{Kind: "test.double", Args: json.RawMessage(`{"n":"x"}`)}); err == nil || !strings.HasPrefix(err.Error(), "test.double job:") {
		t.Fatalf("garbled args: %v", err)
	}
	if _, err := mk(nil, context.Background(), nil, conductor.Job{Kind: "test.double", Args: json.RawMessage(`{"n":-1}`)}); err == nil || err.Error() != "n is negative" {
		t.Fatalf("refused args: %v", err)
	}
	if _, ok := jobs.Lookup("test.none"); ok {
		t.Fatal("an unknown kind found")
	}
}

// Here, the step is the host half then the record half, the note on the
// host's result; a record that fails fails the host.
func TestHalves_Here(t *testing.T) {
	var recorded []string
	record := func(_ context.Context, h inventory.Host, out int, err error) (string, error) {
		recorded = append(recorded, h.Name)
		if err != nil {
			return "", err
		}
		if out > 100 {
			return "", errors.New("too big to record")
		}
		return "got " + strings.Repeat("x", out), nil
	}
	host := func(_ context.Context, c fleet.Conn) (int, error) {
		if c.Host().Name == "bad" {
			return 0, errors.New("host bad: broken")
		}
		if c.Host().Name == "big" {
			return 200, nil
		}
		return 2, nil
	}
	o, step := doubled.Halves(jobs.Op{Live: true}, args{}, host, record)
	if !o.Show().Live {
		t.Fatal("the display settings were lost")
	}
	c := &conn{h: inventory.Host{Name: "w1"}}
	if err := step(context.Background(), c); err != nil || c.note != "got xx" {
		t.Fatalf("w1: %v, note %q", err, c.note)
	}
	c = &conn{h: inventory.Host{Name: "bad"}}
	if err := step(context.Background(), c); err == nil || err.Error() != "host bad: broken" || c.note != "" {
		t.Fatalf("bad: %v, note %q", err, c.note)
	}
	c = &conn{h: inventory.Host{Name: "big"}}
	if err := step(context.Background(), c); err == nil || c.note != "" {
		t.Fatalf("big: %v, note %q", err, c.note)
	}
	if strings.Join(recorded, ",") != "w1,bad,big" {
		t.Fatalf("recorded %v", recorded)
	}
}

// Through a conductor, the result's data is recorded here: the note says
// which conductor, a record that fails makes the host failed, and a host
// that failed there is recorded with its error.
func TestHalves_Conducted(t *testing.T) {
	var gotErr error
	record := func(_ context.Context, h inventory.Host, out int, err error) (string, error) {
		gotErr = err
		if err != nil {
			return "", err
		}
		if out > 100 {
			return "", errors.New("host " + h.Name + ": too big to record")
		}
		return "recorded", nil
	}
	o, _ := doubled.Halves(jobs.Op{}, args{N: 1}, nil, record)
	h := inventory.Host{Name: "s1"}

	r := remote.Result{Host: "s1", Status: remote.OK}
	o.Conducted(context.Background(), h, conductor.Result{Host: "s1", Conductor: "c1", Data: json.RawMessage(`2`)}, &r)
	if r.Status != remote.OK || r.Note != "recorded (conductor c1)" {
		t.Fatalf("ok: %+v", r)
	}
	r = remote.Result{Host: "s1", Status: remote.OK}
	o.Conducted(context.Background(), h, conductor.Result{Host: "s1", Conductor: "c1", Data: json.RawMessage(`200`)}, &r)
	if r.Status != remote.Failed || r.Error != "host s1: too big to record" || r.Note != "" {
		t.Fatalf("record failed: %+v", r)
	}
	r = remote.Result{Host: "s1", Status: remote.Unreachable}
	o.Conducted(context.Background(), h, conductor.Result{Host: "s1", Conductor: "c1"}, &r)
	if r.Status != remote.Unreachable || gotErr == nil || gotErr.Error() != "host s1: unreachable" {
		t.Fatalf("unreachable: %+v, recorded with %v", r, gotErr)
	}
}

// A direct kind (no connection made here) shares the names of the kinds
// with a host half: one name, one kind.
func TestDefineDirect_OneTable(t *testing.T) {
	ran := false
	jobs.DefineDirect("test.direct", func(context.Context, jobs.Worker, conductor.Job) conductor.Result {
		ran = true
		return conductor.Result{Status: "ok"}
	})
	do, ok := jobs.LookupDirect("test.direct")
	if !ok {
		t.Fatal("test.direct not found")
	}
	if r := do(context.Background(), nil, conductor.Job{}); !ran || r.Status != "ok" {
		t.Fatalf("ran %v, %+v", ran, r)
	}
	if _, ok := jobs.Lookup("test.direct"); ok {
		t.Error("a direct kind looked up as a host half")
	}
	if _, ok := jobs.LookupDirect("test.double"); ok {
		t.Error("a host half looked up as a direct kind")
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("a direct kind named as a host half's was accepted")
		}
	}()
	jobs.DefineDirect("test.double", func(context.Context, jobs.Worker, conductor.Job) conductor.Result { return conductor.Result{} })
}
