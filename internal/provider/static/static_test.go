package static_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"booted/internal/config"
	"booted/internal/provider"
	"booted/internal/provider/local"
	"booted/internal/provider/providertest"
	"booted/internal/provider/static"
	"booted/internal/remote"
	"booted/internal/secrets"
	"booted/internal/testutil"
)

// machines are three running local hosts standing in for machines that
// already exist, their keys in a known_hosts file.
type machines struct {
	root, knownHosts string
	addrs            map[string]string
	signer           ssh.Signer
}

func startMachines(t *testing.T) *machines {
	testutil.RequireLocalHosts(t)
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	lp, err := local.New(proj.Config(t), filepath.Join(proj.Inventory, proj.Env, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	signer, pub, err := secrets.DeployKey(filepath.Join(proj.Inventory, proj.Env, "id_ed25519"), "test")
	if err != nil {
		t.Fatal(err)
	}
	m := &machines{root: proj.Root, knownHosts: filepath.Join(proj.Root, "known_hosts"), addrs: map[string]string{}, signer: signer}
	var lines []string
	for _, n := range []string{"h1", "h2", "h3"} {
		in, err := lp.Start(context.Background(), provider.Spec{Name: n, AuthorizedKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		m.addrs[n] = in.Addr
		keyFile := filepath.Join(proj.Inventory, proj.Env, "hosts", n, "fs/etc-ssh/ssh_host_ed25519_key.pub")
		deadline := time.Now().Add(10 * time.Second)
		var b []byte
		for b, err = os.ReadFile(keyFile); err != nil && time.Now().Before(deadline); b, err = os.ReadFile(keyFile) {
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, knownhosts.Line([]string{in.Addr}, k))
	}
	if err := os.WriteFile(m.knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return m
}

// provider returns a static provider listing the machines.
func (m *machines) provider(t *testing.T) *static.Provider {
	y := fmt.Sprintf("version: 1\nprovider:\n  type: static\n  static:\n    known_hosts: %s\n    hosts:\n", m.knownHosts)
	for _, n := range []string{"h1", "h2", "h3"} {
		y += fmt.Sprintf("      - {name: %s, address: %s}\n", n, m.addrs[n])
	}
	y += "roles:\n  workers: {hosts: [h1, h2, h3], min: 1, max: 3}\n"
	env, err := config.Parse(filepath.Join(m.root, "envs", "st.yaml"), "st", []byte(y), config.ProviderFunc(static.Decode))
	if err != nil {
		t.Fatal(err)
	}
	p, err := static.New(env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The conformance suite, on running local hosts listed as static machines:
// the login uses the key the known_hosts file gives, nothing else.
func TestConformance(t *testing.T) {
	m := startMachines(t) // once: the provider never changes them
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		p := m.provider(t)
		return providertest.Subject{
			Provider: p,
			Spec:     func(name string) provider.Spec { return provider.Spec{Name: name} },
			Names:    []string{"h1", "h2", "h3"},
			Run: func(in provider.Instance, cmd string) (string, error) {
				known, err := p.Known(context.Background())
				if err != nil {
					return "", err
				}
				for _, k := range known {
					if k.Name == in.Name {
						return login(k, m.signer, cmd)
					}
				}
				return "", fmt.Errorf("%s not known", in.Name)
			},
		}
	})
}

func login(k provider.Known, signer ssh.Signer, cmd string) (string, error) {
	if k.Key == nil {
		return "", fmt.Errorf("%s: no key known", k.Name)
	}
	return testutil.SSHRun(remote.Target{Name: k.Name, Addr: k.Addr, Port: k.Port, HostKey: k.Key}, signer, cmd, 3*time.Second)
}

// A host the known_hosts file does not have is known without a key.
func TestKnown_Missing(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	y := "version: 1\nprovider:\n  type: static\n  static:\n    known_hosts: " + kh + "\n    hosts:\n      - {name: a, address: 192.0.2.1, port: 2222}\nroles:\n  workers: {hosts: [a], min: 1, max: 1}\n"
	env, err := config.Parse(filepath.Join(dir, "envs", "x.yaml"), "x", []byte(y), config.ProviderFunc(static.Decode))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := static.New(env)
	known, err := p.Known(context.Background())
	if err != nil || len(known) != 1 || known[0].Key != nil || known[0].Port != 2222 {
		t.Errorf("Known = %+v, %v", known, err)
	}
}
