package conductord_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/conductord"
	"booted/internal/provider/registry"
)

// callback is a boot-log line as the site's nginx writes it.
func callback(t *testing.T, remote, name string) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{"time": "2026-12-07T10:00:00+00:00", "remote": remote, "method": "GET", "uri": "/booted/",
		"args": bootlog.Query(name, bootlog.NewToken(), key), "status": "200"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A conductor passes on only its site's hosts' callbacks, from the
// address the site gave each; what the controller checks (token,
// signature, pins) is left to it.
func TestRelay_Verify(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "e.yaml"), []byte(`version: 1
provider:
  type: local
  local: {subnet: 10.77.0.0/24}
nats: {urls: ["tls://127.0.0.1:4222"]}
sites:
  s: {hosts: [w2], subnet: 10.78.0.0/24}
roles:
  workers: {prefix: w, count: 2, min: 1, max: 2}
`), 0o644)
	env, err := registry.LoadEnv(dir, "e")
	if err != nil {
		t.Fatal(err)
	}
	r := &conductord.Relay{Env: env, Site: "s"}
	addrs := map[string]string{"w2": "10.78.0.12"}
	if why := r.Verify(callback(t, "10.78.0.12", "w2"), addrs); why != "" {
		t.Errorf("w2 from its address: %s", why)
	}
	for _, c := range []struct {
		line []byte
		want string
	}{
		{callback(t, "10.78.0.12", "w1"), "callback for w1 from 10.78.0.12: not a host of site s"},
		{callback(t, "10.78.0.99", "w2"), "callback for w2 from 10.78.0.99: not its address (10.78.0.12)"},
		{[]byte(`10.78.0.12 - - "GET /booted/?name=w2"`), "not a JSON callback record"},
	} {
		if why := r.Verify(c.line, addrs); !strings.Contains(why, c.want) {
			t.Errorf("%s: %q, want %q", c.line, why, c.want)
		}
	}
}
