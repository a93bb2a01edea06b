package baremetal_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"booted/internal/bridge"
	"booted/internal/metallab"
	"booted/internal/osimage"
	"booted/internal/provider"
	"booted/internal/provider/baremetal"
	"booted/internal/provider/providertest"
	"booted/internal/provider/registry"
	"booted/internal/testutil"
)

// The conformance suite on three emulated machines (qemu, powered by
// ipmi_sim BMCs through ipmitool) whose NICs are unplugged: what is checked
// is what the BMCs and the provider say (build, start, power, delete,
// netboot once), not an install (the metal end-to-end test in targets does
// that). They install from an imported ISO osimage, so no image is built.
func TestConformance(t *testing.T) {
	testutil.RequireQemu(t)
	testutil.RequireCommands(t, "dnsmasq", "ipmi_sim", "ipmitool", "xorriso")
	testutil.ExclusiveCPU(t) // the machines run under TCG while powered on
	ctx := context.Background()
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	env := proj.Env
	prefix := proj.Gateway[:len(proj.Gateway)-1]
	var nodes string
	for i := 1; i <= 3; i++ {
		nodes += fmt.Sprintf("      - name: n%d\n        nics: [{mac: \"52:54:00:c7:00:%02x\", ip: %s%d, network: prov}]\n        bmc: {address: 127.0.0.1, port: %d, user: admin}\n",
			i, i, prefix, 10+i, testutil.FreeUDP(t))
	}
	body := fmt.Sprintf("version: 1\nprovider:\n  type: baremetal\n  baremetal:\n    osimage: rocky-9.3-x86_64\n    networks:\n      - {name: prov, bridge: %s, subnet: %s}\n    nodes:\n%sroles:\n  workers: {hosts: [n1, n2, n3], min: 1, max: 3}\n",
		bridge.Name(env), proj.Subnet, nodes)
	if err := os.WriteFile(filepath.Join(proj.Root, "envs", env+".yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := registry.LoadEnv(filepath.Join(proj.Root, "envs"), env)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(proj.Inventory, env)
	if _, err := osimage.Import(ctx, testutil.MakeISO(t, "Rocky-9-3-x86_64-dvd", testutil.ISOLayouts["rocky"]), filepath.Join(dir, "osimages"), ""); err != nil {
		t.Fatal(err)
	}
	lab, err := metallab.ForEnv(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Unplugged: each machine's tap exists before the lab would make it,
	// on no bridge.
	for i := 1; i <= 3; i++ {
		tap := bridge.ShortName("bm", env, fmt.Sprintf("n%d", i))
		if out, err := exec.Command("ip", "tuntap", "add", tap, "mode", "tap").CombinedOutput(); err != nil {
			t.Fatalf("ip tuntap add %s: %v %s", tap, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "link", "del", tap).Run() })
		exec.Command("ip", "link", "set", tap, "up").Run()
	}
	if err := lab.Up(ctx); err != nil {
		t.Fatal(err)
	}
	opened, err := baremetal.Open(ctx, cfg, provider.Options{Dir: dir, Root: proj.Root, BaseURL: "http://" + proj.Gateway + ":8077", FailedURL: "http://" + proj.Gateway + ":8077/booted/failed"})
	if err != nil {
		t.Fatal(err)
	}
	p := opened.(*baremetal.Provider)
	t.Cleanup(func() {
		if err := p.Teardown(context.Background()); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if err := lab.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		for _, n := range []string{"n1", "n2", "n3"} { // each case from scratch: no node taken, all off
			if err := p.Delete(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		return providertest.Subject{
			Provider: p, Names: []string{"n1", "n2", "n3"},
			Spec: func(name string) provider.Spec {
				return provider.Spec{Name: name, AuthorizedKey: []byte("ssh-ed25519 AAAAtest test\n"), PhoneHome: []byte("#!/bin/sh\n"), Token: "t0ken"}
			},
		}
	})
}
