package targets

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"booted/internal/bridge"
	"booted/internal/ec2backend"
	"booted/internal/provider/local"
	sess "booted/internal/session"
	"booted/internal/shell"

	"booted/internal/ec2api"
	"booted/internal/metaladmin"
	"booted/internal/testutil"
)

// awsCLI runs the real AWS CLI as the user whose rc file creds:create
// wrote: Debian's (`apt-get install awscli`, v2.9), the one the issue names
// and the test target installs; it needs --endpoint-url (it predates the
// endpoint in the profile).
type awsCLI struct {
	t        *testing.T
	bin      string
	env      []string
	endpoint string
}

// debianAWS and debianPython are Debian's AWS CLI and the system Python
// with Debian's python3-boto3, not the pip ones this machine's PATH has.
const (
	debianAWS    = "/usr/bin/aws"
	debianPython = "/usr/bin/python3"
)

// requireDebian skips (fails in CI) when a Debian client is missing.
func requireDebian(t *testing.T, what string, check ...string) {
	t.Helper()
	if err := exec.Command(check[0], check[1:]...).Run(); err != nil {
		if testutil.InCI() {
			t.Fatalf("CI must run this test: %s: %v (the test target installs it)", what, err)
		}
		t.Skipf("skipped: %s: %v (apt-get install awscli python3-boto3, or run the test target as root)", what, err)
	}
}

func newAWSCLI(t *testing.T, rc, endpoint string) *awsCLI {
	t.Helper()
	f, err := os.Open(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if p := os.Getenv("PYENV_ROOT"); p != "" {
		env = append(env, "PYENV_ROOT="+p)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() { // the rc file's exports, as `source` would set them
		if kv, ok := strings.CutPrefix(sc.Text(), "export "); ok {
			env = append(env, kv)
		}
	}
	return &awsCLI{t: t, bin: debianAWS, env: env, endpoint: endpoint}
}

// run runs `aws ec2 ARGS… --output json`; it returns stdout, stderr and
// whether it succeeded.
func (a *awsCLI) run(args ...string) (string, string, bool) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, append(append([]string{"ec2"}, args...), "--endpoint-url", a.endpoint, "--output", "json")...)
	cmd.Env = a.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

func (a *awsCLI) must(v any, args ...string) {
	a.t.Helper()
	out, errs, ok := a.run(args...)
	if !ok {
		a.t.Fatalf("aws ec2 %s: %s", strings.Join(args, " "), errs)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			a.t.Fatalf("aws ec2 %s: %v: %s", args[0], err, out)
		}
	}
}

type describeOut struct {
	Reservations []struct {
		Instances []struct {
			InstanceId       string
			PrivateIpAddress string
			KeyName          string
			State            struct{ Name string }
			Tags             []struct{ Key, Value string }
		}
	}
}

func (d describeOut) byID() map[string]string {
	m := map[string]string{}
	for _, r := range d.Reservations {
		for _, in := range r.Instances {
			m[in.InstanceId] = in.State.Name + " " + in.PrivateIpAddress
		}
	}
	return m
}

// The EC2 API, driven by the real AWS CLI: key pair, run 3 instances on
// local hosts, describe them running, log in with the key pair's private
// key (strict host key checking against booted's pins), terminate. Another
// user (not an admin) sees none of it and may run local hosts as anyone
// may (a dry run says so); a wrong secret, an unknown
// ID, a bad or unknown parameter get EC2's errors; --dry-run changes
// nothing; a filter of 20 stars is answered at once.
func TestInstances_AWSCLI(t *testing.T) {
	requireDebian(t, "Debian's AWS CLI", debianAWS, "--version")
	f := newFixture(t, testutil.DefaultEnv+"api:\n  admins: [alice]\n")
	env := f.proj.Env
	credsDir, endpoint := serveAPI(t, f, "alice", "bob")
	alice := newAWSCLI(t, filepath.Join(credsDir, "alice.rc"), endpoint)
	bob := newAWSCLI(t, filepath.Join(credsDir, "bob.rc"), endpoint)
	f.waitFor(t, "the API answers", 10*time.Second, func() bool { _, _, ok := alice.run("describe-key-pairs"); return ok })

	var kp struct{ KeyName, KeyFingerprint, KeyMaterial string }
	alice.must(&kp, "create-key-pair", "--key-name", "k1")
	keyFile := filepath.Join(t.TempDir(), "k1")
	if err := os.WriteFile(keyFile, []byte(kp.KeyMaterial), 0o600); err != nil || !strings.Contains(kp.KeyMaterial, "OPENSSH PRIVATE KEY") {
		t.Fatalf("create-key-pair gave %q", kp.KeyMaterial)
	}
	if _, errs, ok := alice.run("create-key-pair", "--key-name", "k1"); ok || !strings.Contains(errs, "InvalidKeyPair.Duplicate") {
		t.Errorf("a second k1: %s", errs)
	}

	var run struct {
		Instances []struct {
			InstanceId string
			State      struct{ Name string }
		}
	}
	ud := filepath.Join(t.TempDir(), "user-data.sh")
	os.WriteFile(ud, []byte("#!/bin/sh\necho \"user-data ran on $(hostname)\" > /root/user-data-ran\n"), 0o644)
	runArgs := []string{"run-instances", "--image-id", "ami-local", "--instance-type", "t2.micro", "--count", "3", "--key-name", "k1",
		"--tag-specifications", "ResourceType=instance,Tags=[{Key=team,Value=blue}]", "--user-data", "file://" + ud, "--client-token", "first-run"}
	alice.must(&run, runArgs...)
	if len(run.Instances) != 3 {
		t.Fatalf("run-instances: %+v", run)
	}
	var ids []string
	for _, in := range run.Instances {
		ids = append(ids, in.InstanceId)
	}
	// The same client token again (a client's retry): the same instances,
	// no new ones; with other parameters, refused.
	var again struct{ Instances []struct{ InstanceId string } }
	alice.must(&again, runArgs...)
	if len(again.Instances) != 3 || again.Instances[0].InstanceId != ids[0] || again.Instances[2].InstanceId != ids[2] {
		t.Errorf("run-instances retried with its client token: %+v, want %v", again, ids)
	}
	if _, errs, ok := alice.run(append(slices.Clone(runArgs[:len(runArgs)-2]), "--count", "1", "--client-token", "first-run")...); ok || !strings.Contains(errs, "IdempotentParameterMismatch") {
		t.Errorf("a client token reused with other parameters: %s", errs)
	}
	for _, in := range run.Instances {
		if !strings.HasPrefix(in.InstanceId, "i-") || in.State.Name != "pending" {
			t.Errorf("run-instances answered %+v, want pending i-…", in)
		}
	}
	var d describeOut
	f.waitFor(t, "the 3 instances running", 90*time.Second, func() bool {
		d = describeOut{}
		alice.must(&d, append([]string{"describe-instances", "--instance-ids"}, ids...)...)
		st := d.byID()
		for _, id := range ids {
			if !strings.HasPrefix(st[id], "running 1") {
				return false
			}
		}
		return true
	})
	if in := d.Reservations[0].Instances[0]; in.KeyName != "k1" || len(in.Tags) != 1 || in.Tags[0].Value != "blue" {
		t.Errorf("describe-instances: %+v", in)
	}
	var filtered describeOut
	alice.must(&filtered, "describe-instances", "--filters", "Name=tag:team,Values=blue", "Name=instance-state-name,Values=running")
	if len(filtered.byID()) != 3 {
		t.Errorf("filters tag:team=blue, running: %v", filtered.byID())
	}

	// The key pair's private key logs in, the host key checked strictly
	// against the one booted pinned.
	known := filepath.Join(f.proj.Inventory, env, "known_hosts")
	ssh := func(id, cmd string) string {
		t.Helper()
		ip := strings.Fields(d.byID()[id])[1]
		out, err := sshKey(keyFile, known, ip, cmd)
		if err != nil {
			t.Errorf("ssh -i k1 root@%s %s: %v %s", ip, cmd, err, out)
		}
		return out
	}
	if got := ssh(ids[0], "hostname"); got != ids[0] {
		t.Errorf("hostname = %q", got)
	}
	// Its user data ran at first boot; the metadata service (at
	// 169.254.169.254, answered by the caller's address) tells each
	// instance its own.
	for _, id := range ids {
		if got := ssh(id, "cat /root/user-data-ran"); got != "user-data ran on "+id {
			t.Errorf("%s: user data: %q", id, got)
		}
		if got := ssh(id, "curl -fsS -m 5 http://169.254.169.254/latest/meta-data/instance-id"); got != id {
			t.Errorf("%s: meta-data/instance-id = %q", id, got)
		}
	}
	var console struct{ InstanceId, Output string }
	alice.must(&console, "get-console-output", "--instance-id", ids[2])
	if console.InstanceId != ids[2] || !strings.Contains(console.Output, "callback sent to http://") {
		t.Errorf("get-console-output of %s (a local host's console is its boot script's output): %+v", ids[2], console)
	}
	if got := ssh(ids[1], "curl -fsS -m 5 http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key"); got != strings.Join(strings.Fields(pubOf(t, keyFile))[:2], " ") {
		t.Errorf("meta-data/public-keys/0/openssh-key = %q", got)
	}
	if got := ssh(ids[1], "curl -fsS -m 5 http://169.254.169.254/latest/meta-data/"); !strings.Contains(got, "instance-id\n") || !strings.Contains(got, "public-keys/") {
		t.Errorf("meta-data/ lists %q", got)
	}
	if res, err := http.Get("http://" + f.proj.Config(t).CallbackAddr() + "/latest/meta-data/instance-id"); err != nil || res.StatusCode != http.StatusNotFound {
		t.Errorf("metadata asked from the controller's own address: %v %v", res, err)
	} else {
		res.Body.Close()
	}

	// bob sees and changes none of alice's; he may run a local host as
	// anyone may (sandboxed: before, only api.admins could): his dry run
	// says it would have succeeded, and makes nothing.
	var none describeOut
	bob.must(&none, "describe-instances")
	if len(none.byID()) != 0 {
		t.Errorf("bob sees %v", none.byID())
	}
	if _, errs, ok := bob.run("run-instances", "--image-id", "ami-local", "--count", "1", "--dry-run"); ok || !strings.Contains(errs, "DryRunOperation") {
		t.Errorf("bob's dry run of a local host: %s", errs)
	}
	bob.must(&none, "describe-instances")
	if len(none.byID()) != 0 {
		t.Errorf("bob's dry run made %v", none.byID())
	}
	if _, errs, ok := bob.run("terminate-instances", "--instance-ids", ids[0]); ok || !strings.Contains(errs, "InvalidInstanceID.NotFound") {
		t.Errorf("bob terminating alice's instance: %s", errs)
	}
	var bobKeys struct{ KeyPairs []struct{ KeyName string } }
	bob.must(&bobKeys, "describe-key-pairs")
	if len(bobKeys.KeyPairs) != 0 {
		t.Errorf("bob sees key pairs %v", bobKeys.KeyPairs)
	}

	// A wrong secret, an unknown ID, a bad parameter.
	wrong := newAWSCLI(t, filepath.Join(credsDir, "alice.rc"), endpoint)
	bad := filepath.Join(t.TempDir(), "credentials")
	b, _ := os.ReadFile(filepath.Join(credsDir, "alice.credentials"))
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "aws_secret_access_key") {
			lines[i] = "aws_secret_access_key = AAAAwrongwrongwrongwrongwrongwrongwrong0"
		}
	}
	os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600)
	for i, e := range wrong.env {
		if strings.HasPrefix(e, "AWS_SHARED_CREDENTIALS_FILE=") {
			wrong.env[i] = "AWS_SHARED_CREDENTIALS_FILE=" + bad
		}
	}
	if _, errs, ok := wrong.run("terminate-instances", "--instance-ids", ids[0]); ok || !strings.Contains(errs, "AuthFailure") {
		t.Errorf("a wrong secret: %s", errs)
	}
	if _, errs, ok := alice.run("describe-instances", "--instance-ids", "i-0123456789abcdef0"); ok || !strings.Contains(errs, "InvalidInstanceID.NotFound") {
		t.Errorf("an unknown ID: %s", errs)
	}
	if _, errs, ok := alice.run("run-instances", "--image-id", "ami-local", "--count", "3:1"); ok || !strings.Contains(errs, "InvalidParameterValue") || !strings.Contains(errs, "MinCount") {
		t.Errorf("MinCount above MaxCount: %s", errs)
	}
	if _, errs, ok := alice.run("run-instances", "--image-id", "ami-nope", "--count", "1"); ok || !strings.Contains(errs, "InvalidAMIID.NotFound") {
		t.Errorf("an unknown image: %s", errs)
	}
	if _, errs, ok := alice.run("run-instances", "--image-id", "ami-local", "--count", "1", "--subnet-id", "subnet-0123"); ok ||
		!strings.Contains(errs, "UnknownParameter") || !strings.Contains(errs, "SubnetId") {
		t.Errorf("a parameter booted does not implement (SubnetId): %s", errs)
	}
	// --dry-run: DryRunOperation where the request would succeed, the
	// action's own error where not, and nothing changes.
	dry := func(want string, args ...string) {
		t.Helper()
		if _, errs, ok := alice.run(append(args, "--dry-run")...); ok || !strings.Contains(errs, want) {
			t.Errorf("aws ec2 %s --dry-run: %s (want %s)", strings.Join(args, " "), errs, want)
		}
	}
	dry("DryRunOperation", "terminate-instances", "--instance-ids", ids[0])
	dry("DryRunOperation", "stop-instances", "--instance-ids", ids[1])
	dry("DryRunOperation", "reboot-instances", "--instance-ids", ids[1])
	dry("DryRunOperation", "run-instances", "--image-id", "ami-local", "--count", "2", "--key-name", "k1")
	dry("InvalidKeyPair.NotFound", "run-instances", "--image-id", "ami-local", "--count", "1", "--key-name", "nope")
	dry("InvalidInstanceID.NotFound", "terminate-instances", "--instance-ids", "i-0123456789abcdef0")
	dry("DryRunOperation", "create-tags", "--resources", ids[0], "--tags", "Key=dry,Value=run")
	dry("DryRunOperation", "delete-key-pair", "--key-name", "k1")
	dry("InvalidKeyPair.Duplicate", "create-key-pair", "--key-name", "k1")
	d = describeOut{}
	alice.must(&d, "describe-instances")
	if st := d.byID(); len(st) != 3 || !strings.HasPrefix(st[ids[0]], "running") || !strings.HasPrefix(st[ids[1]], "running") {
		t.Errorf("after the refused requests and dry runs: %v", st)
	}
	for _, r := range d.Reservations {
		for _, in := range r.Instances {
			for _, tag := range in.Tags {
				if tag.Key == "dry" {
					t.Errorf("create-tags --dry-run tagged %s", in.InstanceId)
				}
			}
		}
	}
	var keys struct{ KeyPairs []struct{ KeyName string } }
	alice.must(&keys, "describe-key-pairs")
	if len(keys.KeyPairs) != 1 || keys.KeyPairs[0].KeyName != "k1" {
		t.Errorf("after delete-key-pair --dry-run: %+v", keys)
	}
	// A filter of 20 stars against a 256-character tag is answered (a
	// backtracking matcher pinned a CPU for minutes: its speed is
	// BenchmarkWildcard's).
	alice.must(nil, "create-tags", "--resources", ids[2], "--tags", "Key=x,Value="+strings.Repeat("a", 256))
	var starred describeOut
	alice.must(&starred, "describe-instances", "--filters", "Name=tag:x,Values="+strings.Repeat("*a", 20)+"b")
	if len(starred.byID()) != 0 {
		t.Errorf("20 stars and a b matched %v", starred.byID())
	}
	alice.must(&starred, "describe-instances", "--filters", "Name=tag:x,Values="+strings.Repeat("*a", 20)+"*")
	if st := starred.byID(); len(st) != 1 || st[ids[2]] == "" {
		t.Errorf("20 stars matched %v, want %s", st, ids[2])
	}
	// delete-key-pair: gone from the list, and a run naming it is refused.
	pub := filepath.Join(t.TempDir(), "k1.pub")
	os.WriteFile(pub, []byte(pubOf(t, keyFile)), 0o644)
	alice.must(nil, "import-key-pair", "--key-name", "k2", "--public-key-material", "fileb://"+pub)
	alice.must(nil, "delete-key-pair", "--key-name", "k2")
	alice.must(&keys, "describe-key-pairs")
	if len(keys.KeyPairs) != 1 || keys.KeyPairs[0].KeyName != "k1" {
		t.Errorf("after delete-key-pair k2: %+v", keys)
	}
	if _, errs, ok := alice.run("describe-key-pairs", "--key-names", "k2"); ok || !strings.Contains(errs, "InvalidKeyPair.NotFound") {
		t.Errorf("describe-key-pairs k2 after its deletion: %s", errs)
	}

	var term struct {
		TerminatingInstances []struct {
			InstanceId   string
			CurrentState struct{ Name string }
		}
	}
	alice.must(&term, append([]string{"terminate-instances", "--instance-ids"}, ids...)...)
	if len(term.TerminatingInstances) != 3 || term.TerminatingInstances[0].CurrentState.Name != "terminated" {
		t.Errorf("terminate-instances: %+v", term)
	}
	var after describeOut
	alice.must(&after, append([]string{"describe-instances", "--instance-ids"}, ids...)...)
	for id, st := range after.byID() {
		if st != "terminated " {
			t.Errorf("%s after terminate: %q", id, st)
		}
	}
	nets, _ := exec.Command("ip", "netns", "list").Output()
	for _, id := range ids {
		if strings.Contains(string(nets), id) {
			t.Errorf("terminated %s still has its namespace", id)
		}
	}
}

// runInstances runs instances:run of n instances of image in f's
// environment, with f.r's settings, and returns the rows it printed.
func runInstances(t *testing.T, f *fixture, image string, n int) []instanceRow {
	t.Helper()
	json := f.r.JSON
	f.r.JSON = true
	defer func() { f.r.JSON = json }()
	f.out.Reset()
	f.must(t, f.r.InstancesRun(context.Background(), f.proj.Env, image, n))
	var rows []instanceRow
	if err := unmarshalRows([]byte(f.out.String()), &rows); err != nil || len(rows) != n {
		t.Fatalf("instances:run printed %v %s", err, f.out)
	}
	return rows
}

// serveAPI makes users with creds:create and runs api:serve for the
// test's environment; it returns the creds directory and the endpoint.
func serveAPI(t *testing.T, f *fixture, users ...string) (string, string) {
	t.Helper()
	env := f.proj.Env
	f.r.APIListen = testutil.FreePort(t)
	ctx, stop := context.WithCancel(context.Background())
	for _, u := range users {
		f.must(t, f.r.CredsCreate(ctx, env, u))
	}
	credsDir := filepath.Join(f.proj.Inventory, env, "creds")
	for _, u := range users {
		for _, file := range []string{u + ".rc", u + ".credentials", u + ".config"} {
			if fi, err := os.Stat(filepath.Join(credsDir, file)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v, want mode 0600", file, fi, err)
			}
		}
	}
	if strings.Contains(f.out.String(), "aws_secret_access_key") {
		t.Error("creds:create printed the secret")
	}
	startAPIServe(t, f.r, env, stop)
	return credsDir, "https://" + f.r.APIListen
}

// startAPIServe runs r's api:serve of env (on r.APIListen) until the
// test ends (stop cancels its context), and waits until it listens.
func startAPIServe(t *testing.T, r *Runner, env string, stop context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.APIServe(ctx, env) }()
	t.Cleanup(func() {
		stop()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("api:serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("api:serve did not stop within 30 s")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.APIListen, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("api:serve does not listen on %s: %v", r.APIListen, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The same flow through boto3 (the Python SDK), as a script: import a key
// pair, run with user data, tags, console output, stop, start, reboot,
// images, instance types, an unknown ID, terminate.
func TestInstances_Boto3(t *testing.T) {
	testutil.RequireCommands(t, "ssh-keygen")
	requireDebian(t, "Debian's python3-boto3", debianPython, "-c", "import boto3")
	f := newFixture(t, testutil.DefaultEnv+"api:\n  admins: [carol]\n")
	credsDir, endpoint := serveAPI(t, f, "carol")
	key := newSSHKey(t)
	cli := newAWSCLI(t, filepath.Join(credsDir, "carol.rc"), endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, filepath.Join("testdata", "boto3_flow.py"), key+".pub")
	cmd.Env = cli.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("boto3 flow: %v: %s", err, stderr.String())
	}
	var seen struct {
		Boto3, Import, Address, Unknown                 string
		Run, Stop, Start, Images, Types, Terminate, IDs []string
		Tags                                            [][]string
		Console                                         int
	}
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("boto3 flow printed %s: %v", out, err)
	}
	t.Logf("boto3 %s", seen.Boto3)
	if !strings.HasPrefix(seen.Import, "SHA256:") || len(seen.Run) != 1 || seen.Run[0] != "pending" || seen.Address == "" {
		t.Errorf("import, run: %+v", seen)
	}
	if len(seen.Tags) != 1 || seen.Tags[0][1] != "owner" || seen.Tags[0][2] != "ci" || seen.Console == 0 {
		t.Errorf("tags, console: %+v", seen)
	}
	if len(seen.Stop) != 1 || seen.Stop[0] != "stopped" || seen.Start[0] != "pending" {
		t.Errorf("stop, start: %+v", seen)
	}
	if len(seen.Images) != 1 || seen.Images[0] != "ami-local" || len(seen.Types) != 4 || seen.Unknown != "InvalidInstanceID.NotFound" || seen.Terminate[0] != "terminated" {
		t.Errorf("images, types, unknown ID, terminate: %+v", seen)
	}
}

// The same through the targets: keypair:import, instances:run with the
// BOOTED_* settings (it waits until they run), describe, stop, start,
// console, terminate; another user sees none of it.
func TestInstances_Targets(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	key := newSSHKey(t)
	f.r.User = "dave"
	f.must(t, f.r.KeypairImport(ctx, env, "laptop", key+".pub"))
	if err := f.r.KeypairImport(ctx, env, "laptop", key+".pub"); err == nil || !strings.Contains(err.Error(), "InvalidKeyPair.Duplicate") {
		t.Errorf("importing laptop twice: %v", err)
	}
	f.r.KeyName, f.r.InstanceType, f.r.Tags = "laptop", "t2.small", map[string]string{"team": "green"}
	f.r.JSON = true
	rows := runInstances(t, f, "ami-local", 2)
	for _, r := range rows {
		if r.State != "running" || r.Address == "" || r.Type != "t2.small" || r.Key != "laptop" || r.Tags["team"] != "green" {
			t.Errorf("after instances:run: %+v", r)
		}
	}
	out, err := sshKey(key, filepath.Join(f.proj.Inventory, env, "known_hosts"), rows[0].Address, "hostname")
	if err != nil || out != rows[0].ID {
		t.Errorf("ssh with the imported key: %v %s", err, out)
	}
	state := func() string {
		t.Helper()
		f.out.Reset()
		f.must(t, f.r.InstancesDescribe(ctx, env))
		var rs []instanceRow
		unmarshalRows([]byte(f.out.String()), &rs)
		by := map[string]string{}
		for _, r := range rs {
			by[r.ID] = r.State
		}
		if len(by) == 0 {
			return ""
		}
		return by[rows[0].ID] + " " + by[rows[1].ID]
	}
	f.must(t, f.r.InstancesStop(ctx, env, rows[0].ID))
	if got := state(); got != "stopped running" {
		t.Errorf("after instances:stop of the first: %s", got)
	}
	f.must(t, f.r.InstancesStart(ctx, env, rows[0].ID))
	if got := state(); got != "running running" {
		t.Errorf("after instances:start: %s", got)
	}
	f.out.Reset()
	f.must(t, f.r.InstancesConsole(ctx, env, rows[1].ID))
	if !strings.Contains(f.out.String(), "callback sent to http://") {
		t.Errorf("instances:console of %s (a local host's console is its boot script's output): %q", rows[1].ID, f.out)
	}
	// hosts:console is the same log, by host name.
	f.out.Reset()
	f.must(t, f.r.HostsConsole(ctx, env, rows[1].ID))
	if !strings.Contains(f.out.String(), "callback sent to http://") {
		t.Errorf("hosts:console %s: %q", rows[1].ID, f.out)
	}
	if err := f.r.HostsConsole(ctx, env, "nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("hosts:console of an unknown host: %v", err)
	}
	// instances:reboot: the instance runs again on a new boot (its PID 1
	// started anew), answering with the key booted pinned.
	known := filepath.Join(f.proj.Inventory, env, "known_hosts")
	boot := func() string {
		t.Helper()
		out, err := sshKey(key, known, rows[1].Address, "cut -d' ' -f22 /proc/1/stat")
		if err != nil || out == "" {
			t.Fatalf("ssh %s: %v %s", rows[1].ID, err, out)
		}
		return out
	}
	before := boot()
	f.must(t, f.r.InstancesReboot(ctx, env, rows[1].ID))
	if got := state(); got != "running running" {
		t.Errorf("after instances:reboot of the second: %s", got)
	}
	if after := boot(); after == before {
		t.Errorf("instances:reboot of %s: its PID 1 started at %s before and after: not rebooted", rows[1].ID, after)
	}
	f.r.User = "erin"
	if got := state(); got != "" {
		t.Errorf("erin sees %q", got)
	}
	if err := f.r.InstancesTerminate(ctx, env, rows[0].ID); err == nil || !strings.Contains(err.Error(), "InvalidInstanceID.NotFound") {
		t.Errorf("erin terminating dave's instance: %v", err)
	}
	f.r.User = "dave"
	f.must(t, f.r.InstancesTerminate(ctx, env, rows[0].ID+","+rows[1].ID))
	if got := state(); got != "terminated terminated" {
		t.Errorf("after instances:terminate: %s", got)
	}

	// A launch whose first-boot step (its user data) fails: run says which
	// instance and why, and describe keeps the reason (EC2's StateReason)
	// on the terminated instance; nothing of it is left running.
	bad := filepath.Join(t.TempDir(), "bad.sh")
	os.WriteFile(bad, []byte("#!/bin/sh\necho 'no such package: frobnicate' >&2\nexit 3\n"), 0o644)
	f.r.UserData, f.r.Tags = bad, nil
	f.out.Reset()
	err = f.r.InstancesRun(ctx, env, "ami-local", 1)
	if err == nil || !strings.Contains(err.Error(), "no such package: frobnicate") {
		t.Fatalf("instances:run with failing user data: %v", err)
	}
	f.out.Reset()
	f.must(t, f.r.InstancesDescribe(ctx, env))
	var all []instanceRow
	unmarshalRows([]byte(f.out.String()), &all)
	var failed *instanceRow
	for i := range all {
		if all[i].ID != rows[0].ID && all[i].ID != rows[1].ID {
			failed = &all[i]
		}
	}
	if failed == nil || failed.State != "terminated" || !strings.Contains(failed.Reason, "first-boot step (/etc/booted/firstboot.sh) exited 3") || !strings.Contains(failed.Reason, "no such package: frobnicate") || failed.Address != "" {
		t.Errorf("the failed launch in describe: %+v", failed)
	} else if nets, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(nets), failed.ID) {
		t.Errorf("the failed %s still has its namespace", failed.ID)
	}
	// Nothing of it is served either: the metadata service answers no
	// address that is not a live instance's (its user data would go to
	// whoever takes its address next).
	live := map[string]bool{}
	for _, in := range all {
		if in.State != "terminated" && in.Address != "" {
			live[in.Address] = true
		}
	}
	served, _ := os.ReadDir(filepath.Join(f.r.Inventory, env, "metadata"))
	for _, e := range served {
		if !live[e.Name()] {
			t.Errorf("the metadata service still serves %s, no live instance's address (the failed launch's user data)", e.Name())
		}
	}

	// keypair:list shows dave's key pair with its fingerprint (erin's
	// list is empty); keypair:del removes it, and a run naming it is
	// then refused before anything starts.
	fp := strings.Fields(pubFingerprint(t, key+".pub"))[1]
	f.out.Reset()
	f.must(t, f.r.KeypairList(ctx, env))
	var kps []struct{ Name, Type, Fingerprint string }
	if err := unmarshalRows([]byte(f.out.String()), &kps); err != nil || len(kps) != 1 || kps[0].Name != "laptop" || kps[0].Fingerprint != fp {
		t.Errorf("keypair:list: %v %+v (want laptop, %s)", err, kps, fp)
	}
	f.r.User = "erin"
	f.out.Reset()
	f.must(t, f.r.KeypairList(ctx, env))
	if kps = nil; unmarshalRows([]byte(f.out.String()), &kps) != nil || len(kps) != 0 {
		t.Errorf("erin's keypair:list: %s", f.out)
	}
	f.r.User = "dave"
	f.must(t, f.r.KeypairDel(ctx, env, "laptop"))
	f.out.Reset()
	f.must(t, f.r.KeypairList(ctx, env))
	if kps = nil; unmarshalRows([]byte(f.out.String()), &kps) != nil || len(kps) != 0 {
		t.Errorf("keypair:list after keypair:del laptop: %s", f.out)
	}
	f.r.UserData, f.r.KeyName = "", "laptop"
	if err := f.r.InstancesRun(ctx, env, "ami-local", 1); err == nil || !strings.Contains(err.Error(), "InvalidKeyPair.NotFound") {
		t.Errorf("instances:run with the deleted key pair: %v", err)
	}
}

// pubFingerprint is ssh-keygen's line for the public key file: bits,
// SHA256 fingerprint, comment, type.
func pubFingerprint(t *testing.T, pub string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", pub).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// newSSHKey makes a user's ed25519 key pair (KEY, KEY.pub) with ssh-keygen.
func newSSHKey(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	return key
}

// pubOf is the public key of private key file f.
func pubOf(t *testing.T, f string) string {
	out, err := exec.Command("ssh-keygen", "-y", "-f", f).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// Bare-metal nodes reserved for a user run only that user's instances;
// a run takes free nodes only (no role, no instance); systems:list says
// who holds what. (The launches are not booted here: the metal test
// boots one.)
func TestInstances_Reservations(t *testing.T) {
	m := newMetalEnv(t, "  workers: {hosts: [n1], min: 1, max: 1}\n")
	ctx := context.Background()
	env := m.proj.Env
	m.must(t, m.r.SystemsReserve(ctx, env, "n2", "alice"))
	if err := m.r.SystemsReserve(ctx, env, "n2", "bob"); err == nil || !strings.Contains(err.Error(), "reserved for alice") {
		t.Errorf("reserving alice's node for bob: %v", err)
	}
	b, launched := backendFor(t, m.r, env)
	run := func(user string, n int) ([]ec2api.Instance, error) {
		return b.Run(ctx, user, ec2api.RunRequest{ImageID: "ami-debian12", Count: n})
	}
	if _, err := b.Run(ctx, "bob", ec2api.RunRequest{ImageID: "ami-debian12", Type: "metal.big", Count: 1}); err == nil ||
		!strings.Contains(err.Error(), "InsufficientInstanceCapacity") || !strings.Contains(err.Error(), "metal.big (2 CPUs, 4096 MiB, 2 GB)") {
		t.Errorf("a size bigger than every node: %v", err)
	}
	if types, _ := b.InstanceTypes(ctx, "bob"); len(types) != 2 || types[0].Name != "metal.small" {
		t.Errorf("instance types from the env file: %+v", types)
	}
	if _, err := run("bob", 2); err == nil || !strings.Contains(err.Error(), "InsufficientInstanceCapacity") {
		t.Errorf("bob asking for 2 nodes with 1 free to him: %v", err)
	}
	bobs, err := run("bob", 1)
	if err != nil {
		t.Fatal(err)
	}
	alices, err := run("alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("alice", 1); err == nil {
		t.Error("a third instance with two nodes free of roles")
	}
	if got := strings.Join(*launched, " "); got != "n3 n2" {
		t.Errorf("instances placed on %q, want bob's on n3 and alice's on her reserved n2", got)
	}
	if err := m.r.SystemsReserve(ctx, env, "n3", "alice"); err == nil || !strings.Contains(err.Error(), "runs instance "+bobs[0].ID+" of bob") {
		t.Errorf("reserving bob's running node for alice: %v", err)
	}
	m.r.JSON = true
	m.out.Reset()
	m.must(t, m.r.SystemsList(ctx, env))
	var rows []metaladmin.SystemRow
	if err := unmarshalRows([]byte(m.out.String()), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("systems:list: %v %s", err, m.out)
	}
	if rows[0].State != "role workers" || rows[1].Reserved != "alice" || rows[1].Instance != alices[0].ID || rows[2].Owner != "bob" {
		t.Errorf("systems:list: %+v", rows)
	}
	m.must(t, m.r.SystemsRelease(ctx, env, "n2"))
}

// keypair:create hands the private key over in NAME.pem (0600), never
// printed nor kept, and refuses to overwrite a file.
func TestInstances_KeypairCreate(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	t.Chdir(t.TempDir())
	f.r.User = "frank"
	f.must(t, f.r.KeypairCreate(ctx, f.proj.Env, "k2"))
	fi, err := os.Stat("k2.pem")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("k2.pem: %v %v", fi, err)
	}
	key, _ := os.ReadFile("k2.pem")
	if !strings.Contains(string(key), "OPENSSH PRIVATE KEY") || strings.Contains(f.out.String(), "PRIVATE KEY") {
		t.Errorf("k2.pem %q; printed %q", key[:40], f.out)
	}
	body := strings.Split(string(key), "\n")[2] // a line of the key itself (the first is the same for every ed25519 key)
	if out, err := exec.Command("grep", "-rlF", body, f.proj.Inventory).Output(); err == nil {
		t.Errorf("k2's private key is kept under the inventory: %s", out)
	}
	if err := f.r.KeypairCreate(ctx, f.proj.Env, "k2"); err == nil || !strings.Contains(err.Error(), "never over a file") {
		t.Errorf("creating k2 again over k2.pem: %v", err)
	}
}

// sshKey runs cmd as root@ip the way a user of the instance would: with
// the key pair's private key, the host key checked strictly against known.
func sshKey(key, known, ip, cmd string) (string, error) {
	out, err := exec.Command("ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+known,
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@"+ip, cmd).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Instances an api:serve accepted but did not launch (it was killed right
// after answering pending) are launched by the next api:serve: none stays
// pending for ever.
func TestInstances_ResumeAfterAPIServeDies(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	b, launched := backendFor(t, f.r, env) // its launches never run: the server that answered is gone
	ins, err := b.Run(ctx, "frank", ec2api.RunRequest{ImageID: "ami-local", Count: 2})
	if err != nil || len(ins) != 2 || len(*launched) != 2 || ins[0].State != "pending" {
		t.Fatalf("run: %+v %v", ins, err)
	}
	serveAPI(t, f, "frank")
	f.waitFor(t, "the pending instances running after api:serve restarted", 60*time.Second, func() bool {
		got, err := b.Describe(ctx, "frank", nil)
		if err != nil || len(got) != 2 {
			t.Fatalf("describe: %+v %v", got, err)
		}
		return got[0].State == "running" && got[1].State == "running"
	})
	if out := f.out.String(); !strings.Contains(out, "resuming the launch of ") || !strings.Contains(out, ins[0].ID) || !strings.Contains(out, ins[1].ID) {
		t.Errorf("api:serve did not say it resumed the launch:\n%s", f.out)
	}
}

// backendFor is the EC2 backend on env as the targets make it, on a
// session opened for the test: a launch is kept, not run.
func backendFor(t *testing.T, r *Runner, env string) (*ec2backend.Backend, *[]string) {
	t.Helper()
	s, err := sess.Open(context.Background(), r.Options, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var pending []string
	return &ec2backend.Backend{Envs: s.EC2Envs(), Launch: func(ids []string) { pending = append(pending, ids...) }}, &pending
}

// Two local instances on one bridge, their users root in them: i1's
// answers ARP for the gateway to i0, and once i0 is stopped takes i0's
// address (announcing it to the gateway) and asks the metadata service for
// i0's user data. i0 keeps the gateway's MAC, and i1 gets nothing; from its
// own address it reads its own (before, i1 read i0's user data and i0 sent
// its traffic for the gateway to i1).
func TestInstances_NoSpoofing(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	var rows []instanceRow
	for i := range 2 {
		ud := filepath.Join(t.TempDir(), "user-data")
		os.WriteFile(ud, []byte(fmt.Sprintf("#!/bin/sh\necho user data of instance %d\n", i)), 0o600)
		f.r.UserData = ud
		rows = append(rows, runInstances(t, f, "ami-local", 1)...)
	}
	f.r.UserData, f.r.JSON = "", false
	ns := func(i int) string { return "booted-" + env + "-" + rows[i].ID }
	in := func(i int, args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns(i)}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	mac := func(i int) string {
		b, err := os.ReadFile("/sys/class/net/" + bridge.Name(env) + "/address")
		if i >= 0 {
			var out string
			out, err = in(i, "cat", "/sys/class/net/eth0/address")
			b = []byte(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	gw, gwMAC := f.proj.Gateway, mac(-1)
	if got, err := in(1, "curl", "-sS", "-m", "5", "http://169.254.169.254/latest/user-data"); err != nil || !strings.Contains(got, "user data of instance 1") {
		t.Fatalf("instance 1's own user data: %v %q", err, got)
	}
	// i1 tells i0 the gateway is at i1's MAC.
	in(0, "ping", "-c", "1", "-W", "2", gw)
	time.Sleep(1200 * time.Millisecond) // past the entry's locktime
	testutil.SendARPReply(t, ns(1), mac(1), gw, mac(0), rows[0].Address)
	time.Sleep(200 * time.Millisecond)
	if neigh, _ := in(0, "ip", "neigh", "show", gw); !strings.Contains(neigh, gwMAC) || strings.Contains(neigh, mac(1)) {
		t.Errorf("instance 0's entry for the gateway after instance 1 answered for it: %q, want the gateway's %s", neigh, gwMAC)
	}
	// The controller's own services on the bridge's address (its SSH,
	// NATS, the APIs, anything listening there) are out of reach; its
	// nginx (callbacks, metadata) is not.
	ln, err := net.Listen("tcp", gw+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "controller service") }))
	if got, err := in(1, "curl", "-sS", "-m", "3", "http://"+ln.Addr().String()+"/"); err == nil || strings.Contains(got, "controller service") {
		t.Errorf("instance 1 reached a service of the controller's on %s: %v %q", ln.Addr(), err, got)
	}
	if res, err := http.Get("http://" + ln.Addr().String() + "/"); err != nil {
		t.Errorf("the service from the controller itself: %v", err)
	} else {
		res.Body.Close()
	}
	if got, err := in(1, "curl", "-sS", "-m", "3", "http://"+f.proj.Config(t).CallbackAddr()+"/booted/?name=x"); err != nil || got != "ok" {
		t.Errorf("instance 1 to the controller's nginx: %v %q", err, got)
	}
	// i0 stops; i1 takes its address.
	f.must(t, f.r.InstancesStop(ctx, env, rows[0].ID))
	if _, err := in(1, "ip", "addr", "add", rows[0].Address+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	testutil.SendARPReply(t, ns(1), mac(1), rows[0].Address, gwMAC, gw)
	time.Sleep(200 * time.Millisecond)
	if got, err := in(1, "curl", "-sS", "-m", "5", "--interface", rows[0].Address, "http://169.254.169.254/latest/user-data"); err == nil || strings.Contains(got, "instance 0") {
		t.Errorf("instance 1 as instance 0 (%s) asked for its user data: %v %q", rows[0].Address, err, got)
	}
	if got, err := in(1, "curl", "-sS", "-m", "5", "http://169.254.169.254/latest/meta-data/instance-id"); err != nil || got != rows[1].ID {
		t.Errorf("instance 1 from its own address: %v %q", err, got)
	}
}

// escapeAttempt is what a tenant root on an instance tries against the
// controller; each must fail.
type escapeAttempt struct{ what, cmd string }

// controllerPorts are the attempts to reach services of the controller's
// listening on the bridge's address gw (stand-ins for its SSH, NATS and
// API, listening until the test ends).
func controllerPorts(t *testing.T, gw string) []escapeAttempt {
	t.Helper()
	var out []escapeAttempt
	for _, what := range []string{"SSH", "NATS", "API"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		out = append(out, escapeAttempt{"reach the controller's " + what, fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && echo connected", gw, ln.Addr().(*net.TCPAddr).Port)})
	}
	return out
}

// tryEscapes runs each attempt on the instance (as root there, with bash)
// and reports any that worked.
func tryEscapes(t *testing.T, run func(cmd string) (string, error), attempts []escapeAttempt) {
	t.Helper()
	for _, a := range attempts {
		out, err := run("timeout 5 bash -c " + shell.Quote(a.cmd))
		if err == nil {
			t.Errorf("a tenant could %s (%s): %s", a.what, a.cmd, out)
		} else {
			t.Logf("%s: refused: %s", a.what, strings.TrimSpace(out))
		}
	}
}

// The escape suite against a tenant's local instance: root in it, with
// its key, the tenant tries to write outside its tree, read inventory/,
// load a module, mount, make and use a raw device, write /proc/sys, take
// network administration, signal or ptrace a controller process, and reach
// the controller's SSH, NATS and API ports. Every attempt fails and the
// controller is unchanged (before, a local host shared the controller's
// root filesystem with every capability: most of them worked).
func TestInstances_Escape(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	key := newSSHKey(t)
	f.r.User = "mallory"
	f.must(t, f.r.KeypairImport(ctx, env, "k", key+".pub"))
	f.r.KeyName = "k"
	in := runInstances(t, f, "ami-local", 1)[0]
	known := filepath.Join(f.proj.Inventory, env, "known_hosts")
	run := func(cmd string) (string, error) { return sshKey(key, known, in.Address, cmd) }
	if out, err := run("id -u; hostname"); err != nil || out != "0\n"+in.ID {
		t.Fatalf("the tenant on its instance: %v %q", err, out)
	}
	deployKey := filepath.Join(f.proj.Inventory, env, "id_ed25519")
	before, _ := os.ReadFile(deployKey)
	attempts := append([]escapeAttempt{
		{"write the controller's /usr", "echo x > /usr/bin/booted-escape"},
		{"write the controller's /etc", "echo x > /etc/booted.escape"},
		{"write the project's tree", "echo x > " + shell.Quote(filepath.Join(f.proj.Root, "escape"))},
		{"read the deploy key in inventory/", "cat " + shell.Quote(deployKey)},
		{"read the controller's root", "ls /proc/1/root/" + shell.Quote(strings.TrimPrefix(f.proj.Inventory, "/"))},
		// (no module tools here: the capability a module load needs, CAP_SYS_MODULE)
		{"load a kernel module", "cap=$(awk '/^CapEff/ {print $2}' /proc/self/status); [ $(( 0x$cap >> 16 & 1 )) = 1 ]"},
		{"mount a filesystem", "mount -t tmpfs none /tmp"},
		{"make a raw device", "mknod /tmp/sda b 8 0"},
		{"read a raw device", "head -c1 /dev/vda || head -c1 /dev/sda || head -c1 /dev/mem || head -c1 /dev/kmsg"},
		{"write /proc/sys", "echo 1 > /proc/sys/vm/drop_caches"},
		{"write its network's kernel knobs", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
		{"write /sys", "echo 1 > /sys/kernel/profiling"},
		{"administer its network", "ip addr add 10.250.250.250/32 dev eth0"},
		{"signal a controller process", fmt.Sprintf("kill -0 %d", os.Getpid())},
		{"ptrace a controller process", fmt.Sprintf("cat /proc/%d/environ", os.Getpid())},
		{"make namespaces of its own", "unshare --mount --pid --fork true"},
		{"make a user namespace of its own", "unshare --user true"},
	}, controllerPorts(t, f.proj.Gateway)...)
	tryEscapes(t, run, attempts)
	for _, p := range []string{"/usr/bin/booted-escape", "/etc/booted.escape", filepath.Join(f.proj.Root, "escape")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the instance wrote %s on the controller", p)
			os.Remove(p)
		}
	}
	if after, _ := os.ReadFile(deployKey); string(after) != string(before) {
		t.Error("the deploy key changed")
	}
	// Its root is root in a user namespace of its own only: an id of its
	// own here (on the code before, the controller's root: "0 0 4294967295").
	if out, err := run("cat /proc/self/uid_map"); err != nil || strings.Join(strings.Fields(out), " ") != fmt.Sprintf("0 %d %d", local.HostUID(env, in.ID), local.UIDs) {
		t.Errorf("the instance's root maps to %q (%v), want 0 %d %d", out, err, local.HostUID(env, in.ID), local.UIDs)
	}
	// and the instance still works for its tenant: its own files, its
	// services, its processes
	if out, err := run("echo mine > /root/f && cat /root/f && echo tmp > /tmp/f && cat /tmp/f && kill -0 $$ && echo alive"); err != nil || out != "mine\ntmp\nalive" {
		t.Errorf("the tenant's own work on its instance: %v %q", err, out)
	}
}

// A launch lets the environment's lock go while its instances boot: an
// operator's change made meanwhile (hosts:attr, waiting 3 s at most for
// the lock) is done at once, and the launch still ends with its instance
// running (before, the launch held the lock for the whole boot, and the
// change gave up: another operation holds the environment).
func TestInstances_LaunchLetsOperatorsIn(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	ud := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(ud, []byte("#!/bin/sh\nsleep 8\n"), 0o600) // the first-boot step: phone-home comes 8 s after boot
	launch := *f.r
	var launchOut testutil.SyncBuffer
	launch.UserData, launch.Out, launch.Err = ud, &launchOut, &launchOut
	launched, done := make(chan error, 1), make(chan struct{})
	lctx, stop := context.WithCancel(ctx)
	go func() { defer close(done); launched <- launch.InstancesRun(lctx, env, "ami-local", 1) }()
	t.Cleanup(func() { stop(); <-done }) // before the fixture's: nothing of the launch outlives the test
	var id string
	seen := map[string]bool{}
	for deadline := time.Now().Add(20 * time.Second); id == ""; time.Sleep(20 * time.Millisecond) {
		for name, h := range f.hosts(t) {
			if strings.HasPrefix(name, "i-") {
				seen[h.State] = true
				if h.State == "booting" {
					id = name
				}
			}
		}
		select {
		case err := <-launched:
			t.Fatalf("instances:run ended before the test saw its instance booting (states seen: %v): %v\n%s", seen, err, launchOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance is not booting within 20 s (states seen: %v)\n%s", seen, launchOut.String())
		}
	}
	op := *f.r
	var opOut testutil.SyncBuffer
	op.LockWait, op.Out, op.Err = 3*time.Second, &opOut, &opOut
	if err := op.HostsAttr(ctx, env, id, "add team blue"); err != nil {
		t.Errorf("an operator's hosts:attr while the instance boots: %v\n%s", err, opOut.String())
	}
	if h := f.hosts(t)[id]; h.State != "booting" {
		t.Errorf("the change was made after the launch, not while the instance booted (it is %s)", h.State)
	}
	if err := <-launched; err != nil {
		t.Fatalf("instances:run: %v\n%s", err, launchOut.String())
	}
	if h := f.hosts(t)[id]; h.State != "ready" && h.State != "serving" {
		t.Errorf("the instance after its launch: %+v", h)
	}
}
