package testres

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A sweep leaves a claimed environment's namespace alone and removes it
// once the claim is gone, as it does after its run was killed.
func TestSweep_SparesClaimed(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root; network namespaces need it")
		}
		t.Skip("needs root to make network namespaces")
	}
	const env = "tfee1ed"
	ns := "booted-" + env + "-w1"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	exists := func() bool { _, err := os.Stat("/run/netns/" + ns); return err == nil }

	release, err := Claim(env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Claim(env); err == nil {
		t.Error("a second claim of the same environment succeeded")
	}
	Sweep()
	if !exists() {
		t.Fatal("the sweep removed the namespace of a claimed environment")
	}
	release()
	Sweep()
	if exists() {
		t.Fatal("the sweep left the namespace of an unclaimed environment")
	}
}

// A network's dnsmasq left by a killed bare-metal test is stopped, once
// its environment is no longer claimed.
func TestSweep_StopsStaleDnsmasq(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root")
		}
		t.Skip("needs root to run dnsmasq")
	}
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dnsmasq is missing in CI (go run mage.go test installs dnsmasq-base)")
		}
		t.Skip("dnsmasq is missing (apt-get install dnsmasq-base)")
	}
	const env = "tfee1ee"
	dir := filepath.Join(t.TempDir(), "inventory", env, "metal", "net", "prov")
	os.MkdirAll(dir, 0o700)
	conf := filepath.Join(dir, "dnsmasq.conf")
	os.WriteFile(conf, []byte("port=0\nuser=root\nno-resolv\n"), 0o600) // no DNS, no DHCP: it only sits there
	release, err := Claim(env)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dnsmasq", "-k", "--conf-file="+conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	time.Sleep(200 * time.Millisecond)
	Sweep()
	select {
	case err := <-done:
		t.Fatalf("the sweep stopped the dnsmasq of a claimed environment (%v)", err)
	default:
	}
	release()
	Sweep()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweep left the dnsmasq of an unclaimed environment")
	}
}

// The metadata DNAT (an nftables table) of a killed instances test goes,
// once its environment is no longer claimed.
func TestSweep_RemovesStaleMetadataRoute(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root with nft (go run mage.go test installs nftables)")
		}
		t.Skip("needs root and nft (apt-get install nftables)")
	}
	const env = "tfee1ef"
	table := "booted_md_" + env
	if out, err := exec.Command("nft", "add", "table", "ip", table).CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "ip", table).Run() })
	has := func() bool {
		out, _ := exec.Command("nft", "list", "tables").Output()
		return strings.Contains(string(out), table+"\n")
	}
	release, err := Claim(env)
	if err != nil {
		t.Fatal(err)
	}
	Sweep()
	if !has() {
		t.Fatal("the sweep removed the table of a claimed environment")
	}
	release()
	Sweep()
	if has() {
		t.Fatal("the sweep left the table of an unclaimed environment")
	}
}
