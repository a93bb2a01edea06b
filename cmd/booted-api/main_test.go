package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"booted/internal/session"
	"booted/internal/settings"
	"booted/internal/testutil"
)

// The plain binary serves the EC2 API of an environment (Debian's AWS CLI
// gets an answer with a user's rc file) and stops cleanly, exit status 0,
// on SIGTERM, as systemd stops it.
func TestBootedAPI_ServesAndStopsOnSIGTERM(t *testing.T) {
	const aws = "/usr/bin/aws" // Debian's, which the test target installs
	if _, err := os.Stat(aws); err != nil {
		if testutil.InCI() {
			t.Fatalf("CI must run this test: %v (the test target installs awscli)", err)
		}
		t.Skipf("skipped: Debian's AWS CLI is missing (apt-get install awscli): %v", err)
	}
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	listen := testutil.FreePort(t)
	bin := filepath.Join(t.TempDir(), "booted-api")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	environ := append(os.Environ(), "BOOTED_ROOT="+proj.Root, "BOOTED_INVENTORY="+proj.Inventory, "BOOTED_API_LISTEN="+listen)
	for _, kv := range environ[len(environ)-3:] {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	st, err := settings.FromEnviron()
	if err != nil {
		t.Fatal(err)
	}
	if err := session.CredsCreate(context.Background(), session.Options{Settings: st, Out: &strings.Builder{}, Err: os.Stderr}, proj.Env, "gina"); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, proj.Env)
	cmd.Env = environ
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.Contains(sc.Text(), "EC2 API on https://"+listen+"/") {
		t.Fatalf("booted-api said %q; stderr %s", sc.Text(), stderr.String())
	}

	// gina's rc file, as `source` would set it, and Debian's CLI.
	rc, err := os.ReadFile(filepath.Join(proj.Inventory, proj.Env, "creds", "gina.rc"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	for _, l := range strings.Split(string(rc), "\n") {
		if kv, ok := strings.CutPrefix(l, "export "); ok {
			env = append(env, kv)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := exec.CommandContext(ctx, aws, "ec2", "describe-key-pairs", "--endpoint-url", "https://"+listen, "--output", "json")
	q.Env = env
	if out, err := q.CombinedOutput(); err != nil || !strings.Contains(string(out), `"KeyPairs": []`) {
		t.Fatalf("aws ec2 describe-key-pairs against booted-api: %v %s", err, out)
	}
	// The CLI checks the certificate: without the CA the rc names, it
	// refuses to talk to booted-api at all.
	var noCA []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") && !strings.HasPrefix(kv, "AWS_CONFIG_FILE=") {
			noCA = append(noCA, kv)
		}
	}
	if len(noCA) != len(env)-2 {
		t.Fatalf("gina.rc sets no AWS_CA_BUNDLE or AWS_CONFIG_FILE:\n%s", rc)
	}
	q = exec.CommandContext(ctx, aws, "ec2", "describe-key-pairs", "--endpoint-url", "https://"+listen, "--region", "booted", "--output", "json")
	q.Env = noCA
	if out, err := q.CombinedOutput(); err == nil || !strings.Contains(string(out), "CERTIFICATE_VERIFY_FAILED") {
		t.Errorf("aws ec2 without booted's CA: %v %s, want a failed certificate check", err, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("booted-api after SIGTERM: %v; stderr %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("booted-api did not stop within 20 s of SIGTERM")
	}
}
