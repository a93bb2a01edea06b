package restapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"booted/internal/ec2api"
	"booted/internal/inventory"
	"booted/internal/query"
)

type secrets map[string][2]string // access key → user, secret

func (s secrets) Secret(akid string) (string, string, error) {
	if c, ok := s[akid]; ok {
		return c[0], c[1], nil
	}
	return "", "", errors.New("unknown")
}

// memBackend is an inventory in memory.
type memBackend struct {
	hosts []Host
	pools map[string][]string

	mu      sync.Mutex
	changes []string
	// hold, when set, keeps a change from ending until it is closed;
	// fail makes it fail.
	hold chan struct{}
	fail error
}

func (b *memBackend) did() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.changes...)
}

func (b *memBackend) Hosts(ctx context.Context, q string) ([]Host, error) {
	var e query.Expr
	if q != "" {
		var err error
		if e, err = query.Parse(q); err != nil {
			return nil, err
		}
	}
	var out []Host
	for _, h := range b.hosts {
		if e == nil || e.Match(&query.Subject{Name: h.Name, Role: h.Role, State: h.State, Attrs: h.Attrs}) {
			out = append(out, h)
		}
	}
	return out, nil
}

func (b *memBackend) Host(ctx context.Context, name string) (Host, error) {
	for _, h := range b.hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("host %s: %w", name, inventory.ErrNotFound)
}

func (b *memBackend) ChangeAttr(ctx context.Context, host string, c AttrChange) error {
	for i := range b.hosts {
		if b.hosts[i].Name == host {
			if c.Op != "add" {
				return Errorf("InvalidParameterValue", "op %q", c.Op)
			}
			b.hosts[i].Attrs[c.Key] = append(b.hosts[i].Attrs[c.Key], c.Values...)
			return nil
		}
	}
	return fmt.Errorf("host %s: %w", host, inventory.ErrNotFound)
}

func (b *memBackend) Pools(ctx context.Context) ([]Pool, error) {
	var out []Pool
	for n, hs := range b.pools {
		out = append(out, Pool{Name: n, Hosts: hs})
	}
	return out, nil
}

func (b *memBackend) ChangePool(ctx context.Context, pool, host string, add bool) error {
	if add {
		b.pools[pool] = append(b.pools[pool], host)
	} else {
		b.pools[pool] = slices.DeleteFunc(b.pools[pool], func(h string) bool { return h == host })
	}
	return nil
}

func (b *memBackend) Events(ctx context.Context, host string, limit int) ([]inventory.Event, error) {
	return []inventory.Event{{ID: 1, Time: time.Unix(1700000000, 0).UTC(), Env: "e", Host: "w1", Kind: "state", From: "booted", To: "ready"}}, nil
}

func (b *memBackend) Listing(ctx context.Context, kind string) ([]json.RawMessage, error) {
	return []json.RawMessage{json.RawMessage(`{"name":"pxe","subnet":"10.99.0.0/24"}`)}, nil
}

func (b *memBackend) Change(ctx context.Context, what, name, arg string) (string, error) {
	b.mu.Lock()
	b.changes = append(b.changes, what+" "+name+" "+arg)
	hold, fail := b.hold, b.fail
	b.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if fail != nil {
		return "half done", fail
	}
	return "done: " + what, nil
}

type memInstances struct{ ec2api.Backend }

func (memInstances) Describe(ctx context.Context, user string, ids []string) ([]ec2api.Instance, error) {
	return []ec2api.Instance{{ID: "i-1", ImageID: "ami-local", Type: "t2.micro", Owner: user, State: "running", Addr: "10.0.0.5", Launched: time.Unix(1700000000, 0).UTC()}}, nil
}

func (memInstances) Run(ctx context.Context, user string, r ec2api.RunRequest) ([]ec2api.Instance, error) {
	if r.ImageID != "ami-local" {
		return nil, &ec2api.Error{Status: 400, Code: "InvalidAMIID.NotFound", Message: "The image id '[" + r.ImageID + "]' does not exist"}
	}
	var out []ec2api.Instance
	for i := 0; i < r.Count; i++ {
		out = append(out, ec2api.Instance{ID: fmt.Sprintf("i-%d", 10+i), ImageID: r.ImageID, Type: "t2.micro", Owner: user, State: "pending", Tags: r.Tags})
	}
	return out, nil
}

func (memInstances) Terminate(ctx context.Context, user string, ids []string) ([]ec2api.StateChange, error) {
	if ids[0] != "i-1" {
		return nil, &ec2api.Error{Status: 400, Code: "InvalidInstanceID.NotFound", Message: "The instance ID '" + ids[0] + "' does not exist"}
	}
	return []ec2api.StateChange{{ID: "i-1", Previous: "running", Current: "shutting-down"}}, nil
}

type fixture struct {
	b   *memBackend
	t   *testing.T
	srv *httptest.Server
	doc *openapi3.T
}

func newFixture(t *testing.T) *fixture {
	b := &memBackend{hosts: []Host{
		{Name: "w1", Role: "workers", State: "serving", IP: "10.0.0.10", Since: time.Unix(1700000000, 0).UTC(), Attrs: map[string][]string{"rack": {"r1"}}, Pools: []string{}, Classes: []string{}},
		{Name: "w2", Role: "workers", State: "failed", IP: "10.0.0.11", Since: time.Unix(1700000000, 0).UTC(), Attrs: map[string][]string{"rack": {"r2"}}, Pools: []string{}, Classes: []string{}},
	}, pools: map[string][]string{}}
	s := &Server{Backend: b, Instances: memInstances{}, Secrets: secrets{"AKIAADMIN": {"ops", "s3cret"}, "AKIAUSER": {"bob", "hunter2"}},
		Admin: func(u string) bool { return u == "ops" }}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 description: %v", err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fixture{t: t, srv: srv, doc: doc, b: b}
}

// do sends a request signed with key (none when key is ""), checks the
// request and the answer against the OpenAPI description, and returns the
// status and body.
// await polls the operation at href until it ended, and returns it.
func (f *fixture) await(href string) []byte {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := f.do("AKIAADMIN", http.MethodGet, href, nil)
		var op Operation
		if json.Unmarshal(body, &op); code != 200 || op.Status != OpRunning || time.Now().After(deadline) {
			return body
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) do(key, method, path string, body any) (int, []byte) {
	f.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(b))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		sec := map[string]string{"AKIAADMIN": "s3cret", "AKIAUSER": "hunter2"}[key]
		sum := sha256.Sum256(b)
		req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key, SecretAccessKey: sec}, req, hex.EncodeToString(sum[:]), Service, "booted", time.Now()); err != nil {
			f.t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "application/json" {
		f.t.Errorf("%s %s: Content-Type %q", method, path, resp.Header.Get("Content-Type"))
	}
	if path != "/openapi.json" {
		f.validate(req, b, resp, out)
	}
	return resp.StatusCode, out
}

// validate checks a request and its answer with kin-openapi's validator.
func (f *fixture) validate(req *http.Request, reqBody []byte, resp *http.Response, body []byte) {
	f.t.Helper()
	router, err := gorillamux.NewRouter(f.doc)
	if err != nil {
		f.t.Fatal(err)
	}
	vreq := req.Clone(context.Background())
	vreq.URL.Host, vreq.URL.Scheme, vreq.Host = "", "", ""
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(vreq)
	if err != nil {
		if resp.StatusCode == http.StatusNotFound {
			return // a route the description does not have: the 404 is the answer
		}
		f.t.Errorf("%s %s is not in openapi.json: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			f.t.Errorf("%s %s: the request does not fit openapi.json: %v", req.Method, req.URL.Path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		f.t.Errorf("%s %s: the answer (%d %s) does not fit openapi.json: %v", req.Method, req.URL.Path, resp.StatusCode, body, err)
	}
}

func TestAPI(t *testing.T) {
	f := newFixture(t)
	code, body := f.do("", http.MethodGet, "/openapi.json", nil)
	if code != 200 || !json.Valid(body) {
		t.Fatalf("/openapi.json: %d", code)
	}

	// Reads with a query.
	code, body = f.do("AKIAADMIN", http.MethodGet, "/api/v1/hosts?q="+strings.ReplaceAll("role:workers and not state:failed", " ", "%20"), nil)
	var hs []Host
	if json.Unmarshal(body, &hs); code != 200 || len(hs) != 1 || hs[0].Name != "w1" {
		t.Errorf("hosts?q=: %d %s", code, body)
	}
	code, body = f.do("AKIAADMIN", http.MethodGet, "/api/v1/hosts?q=role:workers%20and%20nto%20x", nil)
	if code != 400 || !strings.Contains(string(body), `"code":"InvalidQuery"`) || !strings.Contains(string(body), "^") {
		t.Errorf("a bad query: %d %s", code, body)
	}
	if code, body = f.do("AKIAADMIN", http.MethodGet, "/api/v1/hosts/w9", nil); code != 404 || !strings.Contains(string(body), `"code":"NotFound"`) {
		t.Errorf("an unknown host: %d %s", code, body)
	}
	// Writes.
	code, body = f.do("AKIAADMIN", http.MethodPost, "/api/v1/hosts/w2/attrs", AttrChange{Op: "add", Key: "owner", Values: []string{"ada"}})
	if code != 200 || !strings.Contains(string(body), `"owner":["ada"]`) {
		t.Errorf("POST attrs: %d %s", code, body)
	}
	if code, body = f.do("AKIAADMIN", http.MethodPost, "/api/v1/hosts/w2/attrs", map[string]any{"op": "add", "key": "k", "colour": "red"}); code != 400 || !strings.Contains(string(body), "unknown field") {
		t.Errorf("a body with an unknown field: %d %s", code, body)
	}
	if code, body = f.do("AKIAADMIN", http.MethodPut, "/api/v1/pools/canary/hosts/w1", nil); code != 200 || !strings.Contains(string(body), `{"name":"canary","hosts":["w1"]}`) {
		t.Errorf("PUT pool: %d %s", code, body)
	}
	for _, p := range []string{"/api/v1/events?host=w1&limit=5", "/api/v1/networks", "/api/v1/nodes", "/api/v1/osimages", "/api/v1/pools", "/api/v1/hosts/w1", "/api/v1/hosts/w1/attrs"} {
		if code, body := f.do("AKIAADMIN", http.MethodGet, p, nil); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if code, body = f.do("AKIAADMIN", http.MethodGet, "/api/v1/events?limit=lots", nil); code != 400 || !strings.Contains(string(body), "limit") {
		t.Errorf("events?limit=lots: %d %s", code, body)
	}

	// Changes: each route does its target's work, with its argument.
	for _, c := range []struct {
		method, path string
		body         any
		want         string
	}{
		{http.MethodPut, "/api/v1/networks/pxe", nil, "network.create pxe "},
		{http.MethodDelete, "/api/v1/networks/pxe", nil, "network.delete pxe "},
		{http.MethodPut, "/api/v1/nodes/n1", nil, "node.create n1 "},
		{http.MethodPost, "/api/v1/nodes/n1/deploy", map[string]string{"osimage": "debian12"}, "node.deploy n1 debian12"},
		{http.MethodDelete, "/api/v1/nodes/n1", nil, "node.delete n1 "},
		{http.MethodPut, "/api/v1/osimages/deb", map[string]string{"iso": "/srv/debian.iso"}, "osimage.import deb /srv/debian.iso"},
		{http.MethodDelete, "/api/v1/osimages/deb", nil, "osimage.delete deb "},
		{http.MethodPost, "/api/v1/hosts/w1/power", map[string]string{"action": "cycle"}, "host.power w1 cycle"},
		{http.MethodPost, "/api/v1/hosts/w1/rebuild", nil, "host.rebuild w1 "},
	} {
		f.b.mu.Lock()
		f.b.changes = nil
		f.b.mu.Unlock()
		code, body := f.do("AKIAADMIN", c.method, c.path, c.body)
		if what, _, _ := strings.Cut(c.want, " "); Long[what] { // an operation, polled to its end
			var op Operation
			if json.Unmarshal(body, &op); code != http.StatusAccepted || op.Href == "" {
				t.Errorf("%s %s: %d %s, want 202 and an operation", c.method, c.path, code, body)
				continue
			}
			body = f.await(op.Href)
		} else if code != 200 {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
		if did := f.b.did(); len(did) != 1 || did[0] != c.want || !strings.Contains(string(body), `"output":"done: `) {
			t.Errorf("%s %s: %d %s; did %q, want %q", c.method, c.path, code, body, did, c.want)
		}
	}
	f.b.changes = nil
	for _, c := range []struct {
		path string
		body any
		want string
	}{
		{"/api/v1/hosts/w1/power", map[string]string{"action": "explode"}, `one of on, off, cycle`},
		{"/api/v1/hosts/w1/power", map[string]string{"actoin": "on"}, `unknown field`},
		{"/api/v1/hosts/w1/power", nil, `action \"\": one of`},
	} {
		if code, body := f.do("AKIAADMIN", http.MethodPost, c.path, c.body); code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("POST %s %v: %d %s; want 400 with %q", c.path, c.body, code, body, c.want)
		}
	}
	if code, body := f.do("AKIAADMIN", http.MethodPost, "/api/v1/nodes/n1/deploy", nil); code != 400 || !strings.Contains(string(body), "MissingParameter") {
		t.Errorf("a deploy without its osimage: %d %s", code, body)
	}
	if code, body := f.do("AKIAADMIN", http.MethodPut, "/api/v1/osimages/deb", map[string]string{}); code != 400 || !strings.Contains(string(body), "MissingParameter") {
		t.Errorf("an import without its ISO: %d %s", code, body)
	}
	if code, _ := f.do("AKIAUSER", http.MethodPost, "/api/v1/hosts/w1/rebuild", nil); code != 403 {
		t.Errorf("a rebuild by a user who is not an administrator: %d", code)
	}
	if len(f.b.changes) > 0 {
		t.Errorf("refused changes were done: %v", f.b.changes)
	}

	// Without credentials, or with a user's that is not an administrator:
	// refused, and nothing changed.
	code, body = f.do("", http.MethodPost, "/api/v1/hosts/w1/attrs", AttrChange{Op: "add", Key: "owner", Values: []string{"mallory"}})
	if code != 401 || !strings.Contains(string(body), `"code":"Unauthorized"`) {
		t.Errorf("a write without credentials: %d %s", code, body)
	}
	code, body = f.do("AKIAUSER", http.MethodPost, "/api/v1/hosts/w1/attrs", AttrChange{Op: "add", Key: "owner", Values: []string{"bob"}})
	if code != 403 || !strings.Contains(string(body), "api.admins") {
		t.Errorf("a write by a user who is not an administrator: %d %s", code, body)
	}
	if _, body = f.do("AKIAADMIN", http.MethodGet, "/api/v1/hosts/w1/attrs", nil); strings.Contains(string(body), "owner") {
		t.Errorf("a refused write changed w1: %s", body)
	}
	if code, _ = f.do("AKIAUSER", http.MethodGet, "/api/v1/hosts", nil); code != 403 {
		t.Errorf("a user's read of the inventory: %d", code)
	}
	// Instances are every user's own.
	code, body = f.do("AKIAUSER", http.MethodGet, "/api/v1/instances", nil)
	if code != 200 || !strings.Contains(string(body), `"id":"i-1"`) {
		t.Errorf("GET instances: %d %s", code, body)
	}
	if code, body = f.do("AKIAUSER", http.MethodDelete, "/api/v1/instances/i-9", nil); code != 400 || !strings.Contains(string(body), "InvalidInstanceID.NotFound") {
		t.Errorf("DELETE an unknown instance: %d %s", code, body)
	}
	if code, body = f.do("AKIAUSER", http.MethodDelete, "/api/v1/instances/i-1", nil); code != 200 || !strings.Contains(string(body), `"currentState":"shutting-down"`) {
		t.Errorf("DELETE an instance: %d %s", code, body)
	}
	if code, body = f.do("AKIAUSER", http.MethodPost, "/api/v1/instances", RunRequest{ImageID: "ami-local", Count: 2, Tags: map[string]string{"team": "green"}}); code != 201 || strings.Count(string(body), `"state":"pending"`) != 2 {
		t.Errorf("POST instances: %d %s", code, body)
	}
	if code, body = f.do("AKIAUSER", http.MethodPost, "/api/v1/instances", RunRequest{ImageID: "ami-nope"}); code != 400 || !strings.Contains(string(body), "InvalidAMIID.NotFound") {
		t.Errorf("POST instances of an unknown image: %d %s", code, body)
	}
	if code, body = f.do("AKIAUSER", http.MethodGet, "/api/v1/nothing", nil); code != 404 || !strings.Contains(string(body), "openapi.json") {
		t.Errorf("an unknown route: %d %s", code, body)
	}
}

// The description's host states are the inventory's.
func TestOpenAPI_StatesAreTheInventorys(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Components.Schemas["Host"].Properties["state"].Enum
	var want []string
	for _, s := range inventory.States {
		want = append(want, string(s))
	}
	if !slices.Equal(got, want) {
		t.Errorf("openapi.json's host states %v; the inventory's %v", got, want)
	}
}

// A change captured on the way and sent again is refused (401) before it
// reaches the backend.
func TestReplayedChangeRefused(t *testing.T) {
	f := newFixture(t)
	b, _ := json.Marshal(AttrChange{Op: "add", Key: "owner", Values: []string{"ada"}})
	sum := sha256.Sum256(b)
	signed, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/hosts/w2/attrs", bytes.NewReader(b))
	signed.Header.Set("Content-Type", "application/json")
	signed.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	// signed ten seconds ago: captured then, sent again now
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIAADMIN", SecretAccessKey: "s3cret"}, signed, hex.EncodeToString(sum[:]), Service, "booted", time.Now().Add(-10*time.Second)); err != nil {
		t.Fatal(err)
	}
	var codes []int
	for range 2 {
		r, _ := http.NewRequest(http.MethodPost, signed.URL.String(), bytes.NewReader(b))
		r.Header = signed.Header.Clone()
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 401 && !strings.Contains(string(out), "a replay") {
			t.Errorf("the replay's answer: %s", out)
		}
	}
	if codes[0] != 200 || codes[1] != 401 {
		t.Fatalf("the change, then its replay: %v; want 200, 401", codes)
	}
}

// A long change (a node's install, an ISO's import, a rebuild) is answered
// at once with an operation, and goes on without the request: the client
// that hung up polls it running, then done with what the target printed,
// or failed with the error's code; operations are an administrator's, and
// an unknown one is 404 (before, the change answered only when done, and a
// lost connection lost its outcome).
func TestOperations_LongChangesArePolled(t *testing.T) {
	f := newFixture(t)
	f.b.mu.Lock()
	f.b.hold = make(chan struct{})
	f.b.mu.Unlock()
	start := time.Now()
	code, body := f.do("AKIAADMIN", http.MethodPost, "/api/v1/hosts/w1/rebuild", nil)
	var op Operation
	if json.Unmarshal(body, &op); code != http.StatusAccepted || op.Status != OpRunning || op.Change != "host.rebuild" || op.Name != "w1" || op.User != "ops" {
		t.Fatalf("POST rebuild while the change runs: %d %s", code, body)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the answer waited for the change")
	}
	if code, body = f.do("AKIAADMIN", http.MethodGet, op.Href, nil); code != 200 || !strings.Contains(string(body), `"status":"running"`) {
		t.Errorf("GET the operation while it runs: %d %s", code, body)
	}
	close(f.b.hold)
	body = f.await(op.Href)
	if json.Unmarshal(body, &op); op.Status != OpDone || op.Output != "done: host.rebuild" || op.Ended == nil || op.Error != nil {
		t.Errorf("the operation once done: %s", body)
	}
	f.b.mu.Lock()
	f.b.hold, f.b.fail = nil, &Error{Status: 404, Code: "NotFound", Message: "no node n9"}
	f.b.mu.Unlock()
	_, body = f.do("AKIAADMIN", http.MethodPost, "/api/v1/nodes/n9/deploy", map[string]string{"osimage": "debian12"})
	json.Unmarshal(body, &op)
	body = f.await(op.Href)
	if json.Unmarshal(body, &op); op.Status != OpFailed || op.Error == nil || op.Error.Code != "NotFound" || op.Output != "half done" {
		t.Errorf("a failed operation: %s", body)
	}
	if code, body = f.do("AKIAADMIN", http.MethodGet, "/api/v1/operations", nil); code != 200 || strings.Count(string(body), `"id":"op-`) != 2 {
		t.Errorf("GET /api/v1/operations: %d %s", code, body)
	}
	if code, _ = f.do("AKIAUSER", http.MethodGet, op.Href, nil); code != 403 {
		t.Errorf("a user who is not an administrator reading an operation: %d", code)
	}
	if code, _ = f.do("AKIAADMIN", http.MethodGet, "/api/v1/operations/op-nosuch", nil); code != 404 {
		t.Errorf("an unknown operation: %d", code)
	}
}
