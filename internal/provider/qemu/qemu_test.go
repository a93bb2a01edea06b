package qemu_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/config"
	"booted/internal/provider"
	"booted/internal/provider/providertest"
	"booted/internal/provider/qemu"
	"booted/internal/remote"
	"booted/internal/secrets"
	"booted/internal/testutil"
)

// The conformance suite on real VMs (TCG here: a boot takes about a
// minute), one environment for all its cases, each case with hosts of its
// own. The subject logs in with the key the VM's seed gives it, against
// the host key the VM prints on its console at first boot.
func TestConformance(t *testing.T) {
	testutil.RequireQemu(t)
	if testing.Short() {
		t.Skip("skipped with -short: boots real VMs (minutes under TCG)")
	}
	testutil.ExclusiveCPU(t)
	proj := testutil.NewProject(t, testutil.DefaultEnv) // a free subnet, cleaned up
	y := fmt.Sprintf("version: 1\nprovider:\n  type: qemu\n  qemu: {subnet: %s, memory_mb: 512}\nroles:\n  workers: {prefix: v, count: 1, min: 1, max: 30}\n", proj.Subnet)
	env, err := config.Parse(filepath.Join(proj.Root, "envs", proj.Env+".yaml"), proj.Env, []byte(y), config.ProviderFunc(qemu.Decode))
	if err != nil {
		t.Fatal(err)
	}
	p, err := qemu.New(env, filepath.Join(proj.Inventory, proj.Env))
	if err != nil {
		t.Fatal(err)
	}
	p.StopTimeout = 10 * time.Second
	t.Cleanup(func() { p.Teardown(context.Background()) })
	if err := p.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	signer, pub, err := secrets.DeployKey(filepath.Join(proj.Inventory, proj.Env, "id_ed25519"), "test")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		n++
		names := []string{fmt.Sprintf("c%da", n), fmt.Sprintf("c%db", n), fmt.Sprintf("c%dc", n)}
		return providertest.Subject{
			Provider: p, Names: names, BootTimeout: 4 * time.Minute,
			Spec: func(name string) provider.Spec {
				return provider.Spec{Name: name, AuthorizedKey: pub, PhoneHome: []byte("#!/bin/sh\necho \"booted-test-key $(cat /etc/ssh/ssh_host_ed25519_key.pub)\" > /dev/console\n")}
			},
			Run:     func(in provider.Instance, cmd string) (string, error) { return run(p, in, signer, cmd) },
			Guarded: func(port string) bool { return testutil.PortGuarded("", proj.Env, port) },
		}
	})
}

// run logs in to a VM: its host key is the one its phone-home script
// printed on its console (a real one sends it to the controller).
func run(p *qemu.Provider, in provider.Instance, signer ssh.Signer, cmd string) (string, error) {
	b, err := os.ReadFile(p.ConsoleLog(in.Name))
	if err != nil {
		return "", err
	}
	const mark = "booted-test-key "
	i := strings.LastIndex(string(b), mark)
	if i < 0 {
		return "", fmt.Errorf("%s: no host key on the console yet", in.Name)
	}
	line, _, _ := strings.Cut(string(b[i+len(mark):]), "\n")
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return "", err
	}
	return testutil.SSHRun(remote.Target{Name: in.Name, Addr: in.Addr, HostKey: key}, signer, cmd, 5*time.Second)
}
