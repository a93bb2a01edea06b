package testutil

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The validators the tests check booted's outputs with: the tools that
// read them (the test target installs each).

// CheckJUnit checks the JUnit file at path against the Jenkins xunit
// plugin's schema and Ant's (xmllint, libxml2-utils).
func CheckJUnit(t testing.TB, path string) {
	t.Helper()
	RequireCommands(t, "xmllint")
	dir := filepath.Join(RepoRoot(t), "internal", "service", "testdata", "junit-schemas")
	for _, xsd := range []string{"jenkins-xunit-junit-10.xsd", "ant-junit.xsd"} {
		out, err := exec.Command("xmllint", "--noout", "--schema", filepath.Join(dir, xsd), path).CombinedOutput()
		if err != nil {
			b, _ := os.ReadFile(path)
			t.Errorf("%s rejects %s: %v\n%s\n%s", xsd, path, err, out, b)
		}
	}
}

// CheckMetrics checks a /metrics body with `promtool check metrics`
// (prometheus).
func CheckMetrics(t testing.TB, body string) {
	t.Helper()
	RequireCommands(t, "promtool")
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, body)
	}
}

// ChromiumTrust is the flag that makes Chromium trust the server
// certificate in certFile (PEM), as a user who imported it would; any
// other certificate still fails.
func ChromiumTrust(t testing.TB, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatalf("%s: not PEM", certFile)
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", certFile, err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "--ignore-certificate-errors-spki-list=" + base64.StdEncoding.EncodeToString(sum[:])
}

// Chromium runs headless Chromium with args (a URL last) and returns what
// it printed: --dump-dom gives the page as Chromium built it, scripts run.
func Chromium(t testing.TB, args ...string) string {
	t.Helper()
	RequireCommands(t, "chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// No zygote: on this machine, since 2026-12-07 14:00, the zygote's
	// children get EACCES reading /proc/self/exe once they drop their
	// capabilities and the GPU process aborts ("sandbox_linux.cc: Check
	// failed: Permission denied"), even with --no-sandbox; the cause is
	// outside booted (the kernel runs the bpf LSM; no rule found). A page
	// renders the same without the zygote.
	cmd := exec.CommandContext(ctx, "chromium", append([]string{"--headless", "--no-sandbox", "--no-zygote", "--disable-gpu", "--hide-scrollbars",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir()}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}
