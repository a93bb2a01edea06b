package testres

import (
	"os"
	"os/exec"
	"testing"
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
