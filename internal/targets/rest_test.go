package targets

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"booted/internal/config"
	"booted/internal/provider"
	"booted/internal/testutil"
)

// The REST API against a running api:serve, with curl as the client (its
// --aws-sigv4 signing, from the curlrc creds:create writes): an
// administrator reads hosts by expression and changes an attribute, which
// the targets then see; a user who is not one, and a request without
// credentials, are refused and change nothing; /openapi.json is a valid
// OpenAPI description; the status page links each host to its JSON.
func TestFake_RESTAPI(t *testing.T) {
	testutil.RequireCommands(t, "curl")
	f := fakeProject(t, fakeRoles+"api:\n  admins: [ops]\n")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	f.r.APIListen = testutil.FreePort(t)
	f.must(t, f.r.CredsCreate(ctx, f.env, "ops"))
	f.must(t, f.r.CredsCreate(ctx, f.env, "bob"))
	credsDir := filepath.Join(f.root, "inventory", f.env, "creds")
	if fi, err := os.Stat(filepath.Join(credsDir, "ops.curlrc")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ops.curlrc: %v %v, want mode 0600", fi, err)
	}
	// api:serve opens the environment once (its env file, the inventory,
	// the providers) and serves every request on it: a request that only
	// reads, or changes the inventory, opens nothing.
	var opens atomic.Int32
	open := f.r.OpenProvider
	f.r.OpenProvider = func(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
		opens.Add(1)
		return open(ctx, env, o)
	}
	startAPIServe(t, f.r, f.env, stop)
	// HTTPS, with a certificate signed by the environment's own CA, the
	// file each user's curlrc and rc name
	base := "https://" + f.r.APIListen
	ca := filepath.Join(f.root, "inventory", f.env, "api-tls", "ca.pem")
	if rc, err := os.ReadFile(filepath.Join(credsDir, "ops.curlrc")); err != nil || !strings.Contains(string(rc), `cacert = "`+ca+`"`) {
		t.Errorf("ops.curlrc does not name the CA %s: %s %v", ca, rc, err)
	}
	curl := func(user string, args ...string) (string, int) {
		t.Helper()
		a := []string{"-s", "-o", "-", "-w", "\n%{http_code}"}
		if user != "" {
			a = append(a, "-K", filepath.Join(credsDir, user+".curlrc"))
		} else {
			a = append(a, "--cacert", ca)
		}
		out, err := exec.Command("curl", append(a, args...)...).Output()
		if err != nil && user == "" {
			t.Fatalf("curl %v: %v", args, err)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		code := 0
		if i >= 0 {
			json.Unmarshal([]byte(s[i+1:]), &code)
			s = strings.TrimSpace(s[:i])
		}
		return s, code
	}

	spec, code := curl("", base+"/openapi.json")
	if code != 200 {
		t.Fatalf("/openapi.json: %d", code)
	}
	doc, err := openapi3.NewLoader().LoadFromData([]byte(spec))
	if err == nil {
		err = doc.Validate(ctx)
	}
	if err != nil {
		t.Errorf("/openapi.json is not a valid OpenAPI 3 description: %v", err)
	}

	body, code := curl("ops", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"op":"add","key":"rack","values":["r1"]}`, base+"/api/v1/hosts/w1/attrs")
	if code != 200 || !strings.Contains(body, `"rack":["r1"]`) {
		t.Fatalf("POST /api/v1/hosts/w1/attrs by ops: %d %s", code, body)
	}
	for range 3 {
		curl("ops", base+"/api/v1/hosts")
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("api:serve opened the environment %d times for 5 requests; want once, when it started", n)
	}
	body, code = curl("ops", "-G", "--data-urlencode", "q=role:workers and attr:rack=r1", base+"/api/v1/hosts")
	var hosts []struct {
		Name  string              `json:"name"`
		Attrs map[string][]string `json:"attrs"`
	}
	if json.Unmarshal([]byte(body), &hosts); code != 200 || len(hosts) != 1 || hosts[0].Name != "w1" || hosts[0].Attrs["memory_mb"] == nil {
		t.Errorf("GET /api/v1/hosts?q=…: %d %s", code, body)
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsQuery(ctx, f.env, "attr:rack=r1"))
	f.r.JSON = false
	if !strings.Contains(f.out.String(), `"name":"w1"`) {
		t.Errorf("hosts:query does not see the attribute the API set:\n%s", f.out)
	}
	if body, code = curl("ops", "-G", "--data-urlencode", "q=role:workers and nto x", base+"/api/v1/hosts"); code != 400 || !strings.Contains(body, `"code":"InvalidQuery"`) {
		t.Errorf("a bad query: %d %s", code, body)
	}
	if body, code = curl("ops", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"op":"set","key":"ip","values":["1.2.3.4"]}`, base+"/api/v1/hosts/w1/attrs"); code != 400 || !strings.Contains(body, "fills itself") {
		t.Errorf("setting a reserved attribute: %d %s", code, body)
	}

	// Refused writes change nothing.
	if body, code = curl("bob", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"op":"add","key":"owner","values":["bob"]}`, base+"/api/v1/hosts/w1/attrs"); code != 403 || !strings.Contains(body, `"code":"Forbidden"`) {
		t.Errorf("a write by bob (not an administrator): %d %s", code, body)
	}
	if body, code = curl("", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"op":"add","key":"owner","values":["mallory"]}`, base+"/api/v1/hosts/w1/attrs"); code != 401 || !strings.Contains(body, `"code":"Unauthorized"`) {
		t.Errorf("a write without credentials: %d %s", code, body)
	}
	body, _ = curl("ops", base+"/api/v1/hosts/w1/attrs")
	if strings.Contains(body, "owner") {
		t.Errorf("a refused write changed w1: %s", body)
	}
	// bob's own instances (none; he runs one at the end). The status page
	// says what a local host is.
	if body, code = curl("bob", base+"/api/v1/instances"); code != 200 || body != "[]" {
		t.Errorf("GET /api/v1/instances by bob: %d %s", code, body)
	}

	// api:serve's real /status, as Chromium builds it for ops (the access
	// key ID and secret a browser asks for, the API's certificate trusted):
	// the hosts by role, each linking to its JSON, and who may run local
	// hosts. Chromium without the certificate gets no page.
	ak, secret := readCreds(t, filepath.Join(credsDir, "ops.credentials"))
	withCreds := (&url.URL{Scheme: "https", User: url.UserPassword(ak, secret), Host: f.r.APIListen}).String()
	dom := testutil.Chromium(t, testutil.ChromiumTrust(t, filepath.Join(f.root, "inventory", f.env, "api-tls", "server.pem")), "--dump-dom", withCreds+"/status")
	for _, want := range []string{"its root an unprivileged id here, bounded to 1024 MiB, 1024 processes and 1 CPU", `<a href="/api/v1/hosts/w1">w1</a>`, "<h3>workers</h3>"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the status page Chromium built lacks %q:\n%s", want, dom)
		}
	}
	if dom := testutil.Chromium(t, "--dump-dom", withCreds+"/status"); strings.Contains(dom, "w1") {
		t.Errorf("Chromium built the status page without trusting the API's certificate:\n%s", dom)
	}

	// Changes through the API are the targets' own: power a worker off
	// and on, rebuild one (a new host key).
	if body, code = curl("ops", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"action":"off"}`, base+"/api/v1/hosts/w2/power"); code != 200 {
		t.Errorf("POST /api/v1/hosts/w2/power off: %d %s", code, body)
	}
	if st := f.states(t)["w2"]; st != "stopped" {
		t.Errorf("w2 is %s after a power off through the API", st)
	}
	if body, code = curl("ops", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"action":"on"}`, base+"/api/v1/hosts/w2/power"); code != 200 {
		t.Errorf("POST /api/v1/hosts/w2/power on: %d %s", code, body)
	}
	before, _ := curl("ops", base+"/api/v1/hosts/w3")
	// a rebuild is long: answered at once with an operation, polled to its end
	var op struct{ Href, Status, Output string }
	if body, code = curl("ops", "-X", "POST", base+"/api/v1/hosts/w3/rebuild"); code != 202 || json.Unmarshal([]byte(body), &op) != nil || op.Href == "" {
		t.Fatalf("POST /api/v1/hosts/w3/rebuild: %d %s, want 202 and an operation", code, body)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		body, code = curl("ops", base+op.Href)
		if json.Unmarshal([]byte(body), &op) != nil || op.Status != "running" || time.Now().After(deadline) {
			break
		}
	}
	if op.Status != "done" || !strings.Contains(op.Output, "w3: rebuilt in") {
		t.Errorf("GET %s: %s", op.Href, body)
	}
	after, _ := curl("ops", base+"/api/v1/hosts/w3")
	var b, a struct{ HostKey, State string }
	json.Unmarshal([]byte(before), &b)
	json.Unmarshal([]byte(after), &a)
	if a.HostKey == b.HostKey || a.State != "serving" {
		t.Errorf("w3 after a rebuild through the API: %s (before: %s)", after, before)
	}
	if body, code = curl("bob", "-X", "POST", base+"/api/v1/hosts/w3/rebuild"); code != 403 {
		t.Errorf("a rebuild by bob: %d %s", code, body)
	}

	// The status page, served by the same server, links each host to its
	// JSON, for an administrator; bob (no administrator, no instances)
	// sees none of the hosts; without credentials, nothing.
	page, code := curl("ops", base+"/status")
	if code != 200 || !strings.Contains(page, `<a href="/api/v1/hosts/w1">w1</a>`) || !strings.Contains(page, `<a href="/api/v1/hosts/lb1">lb1</a>`) {
		t.Errorf("/status for ops: %d\n%s", code, page)
	}
	if page, code = curl("bob", base+"/status"); code != 200 || strings.Contains(page, "w1") || strings.Contains(page, "lb1") || !strings.Contains(page, "bob: your instances") {
		t.Errorf("/status for bob: %d\n%s", code, page)
	}
	if page, code = curl("", base+"/status"); code != 401 || strings.Contains(page, "w1") {
		t.Errorf("/status without credentials: %d\n%s", code, page)
	}
	// bob (no admin) runs a local host as anyone may (sandboxed: before,
	// only api.admins could), and he alone sees it.
	body, code = curl("bob", "-X", "POST", "-H", "Content-Type: application/json", "--data", `{"imageId":"ami-local"}`, base+"/api/v1/instances")
	var run []struct{ ID string }
	if json.Unmarshal([]byte(body), &run); code != 201 || len(run) != 1 || !strings.HasPrefix(run[0].ID, "i-") {
		t.Fatalf("POST /api/v1/instances of ami-local by bob (no admin): %d %s", code, body)
	}
	if body, code = curl("bob", base+"/api/v1/instances"); code != 200 || !strings.Contains(body, run[0].ID) {
		t.Errorf("GET /api/v1/instances by bob after his run: %d %s", code, body)
	}
	if body, _ = curl("ops", base+"/api/v1/instances"); strings.Contains(body, run[0].ID) {
		t.Errorf("ops lists bob's instance among their own: %s", body)
	}
}

// readCreds reads the access key ID and secret of an AWS credentials file.
func readCreds(t *testing.T, path string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ak, secret string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, " = ")
		switch k {
		case "aws_access_key_id":
			ak = v
		case "aws_secret_access_key":
			secret = v
		}
	}
	if ak == "" || secret == "" {
		t.Fatalf("%s: no access key", path)
	}
	return ak, secret
}
