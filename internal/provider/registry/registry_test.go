package registry_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"booted/internal/provider/registry"
)

func load(t *testing.T, body string) (addr string, phones bool) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := registry.LoadEnv(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	return env.Callback.Address, env.Provider.PhonesHome()
}

const static = `version: 1
provider:
  type: static
%s  static:
    hosts:
      - {name: s1, address: 192.0.2.10}
roles:
  workers: {hosts: [s1], min: 1, max: 1}
%s`

// Whether an environment's hosts phone home is each provider's, its roles'
// included: a static environment with a role of local hosts phones home
// to that role's bridge (it had no callback address, and nginx refused
// ":8077").
func TestLoadEnv_PhoneHomeAcrossRoles(t *testing.T) {
	if addr, phones := load(t, fmt.Sprintf(static, "", "")); addr != "" || phones {
		t.Errorf("static alone: callback %q, phones home %v; want none", addr, phones)
	}
	addr, phones := load(t, fmt.Sprintf(static, "  local: {subnet: 10.77.3.0/24}\n", "  edge: {hosts: [e1], min: 1, max: 1, provider: local}\n"))
	if addr != "10.77.3.1" || !phones {
		t.Errorf("static with a local role: callback %q, phones home %v; want the local bridge's 10.77.3.1", addr, phones)
	}
	addr, _ = load(t, fmt.Sprintf(static, "  local: {subnet: 10.77.3.0/24}\n", "  edge: {hosts: [e1], min: 1, max: 1, provider: local}\ncallback: {address: 10.77.3.254}\n"))
	if addr != "10.77.3.254" {
		t.Errorf("callback.address given: %q", addr)
	}
}

// The image IDs instances run are the registry's, one per provider type
// that makes instances.
func TestImage(t *testing.T) {
	for typ, want := range map[string]string{"local": "ami-local", "qemu": "ami-debian12", "baremetal": "ami-debian12", "static": "", "vbox": ""} {
		if got, ok := registry.Image(typ); got != want || ok != (want != "") {
			t.Errorf("Image(%s) = %q %v, want %q", typ, got, ok, want)
		}
	}
}
