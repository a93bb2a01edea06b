package natsconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/config"
)

// Which credentials a connection uses: BOOTED_NATS_CREDENTIALS first; a
// site's own, else nats:config's key for the site, else the cluster's; the
// controller's nats.credentials, else nats:config's key for it.
func TestClient_Credentials(t *testing.T) {
	dir := t.TempDir()
	f := Files{Dir: dir}
	env := &config.Env{Name: "e", Path: "envs/e.yaml", NATS: config.NATS{URLs: []string{"nats://127.0.0.1:1"}},
		Sites: map[string]*config.Site{"a": {}, "b": {Credentials: "/srv/b.nk"}}}
	check := func(c Client, field, path string) {
		t.Helper()
		if f, p := c.credentials(); f != field || p != path {
			t.Errorf("site %q: %s %s, want %s %s", c.Site, f, p, field, path)
		}
	}
	check(Client{Env: env, Files: f}, "nats.credentials", "")
	check(Client{Env: env, Files: f, Site: "a"}, "nats.credentials", "")
	os.WriteFile(f.Controller(), []byte("x"), 0o600)
	os.WriteFile(f.Site("a"), []byte("x"), 0o600)
	check(Client{Env: env, Files: f}, "nats.credentials", f.Controller())
	check(Client{Env: env, Files: f, Site: "a"}, "sites.a.credentials", f.Site("a"))
	check(Client{Env: env, Files: f, Site: "b"}, "sites.b.credentials", "/srv/b.nk")
	check(Client{Env: env, Files: f, Site: "b", Credentials: "/srv/o.nk"}, "BOOTED_NATS_CREDENTIALS", "/srv/o.nk")

	// A credentials file that is not one fails before any connection,
	// naming the setting and the file.
	_, _, err := Client{Env: env, Files: f, Site: "a"}.Connect()
	if err == nil || !strings.Contains(err.Error(), "envs/e.yaml: sites.a.credentials "+filepath.Join(dir, "site-a.nk")) {
		t.Errorf("a garbled seed: %v", err)
	}
}
