package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/provider"
	"booted/internal/testutil"
)

// qemuProject is a project whose environment runs qemu VMs on a free subnet.
func qemuProject(t *testing.T, boot string) *fixture {
	testutil.RequireQemu(t)
	testutil.ExclusiveCPU(t)                            // a TCG VM takes a core for a minute
	proj := testutil.NewProject(t, testutil.DefaultEnv) // a free subnet, cleaned up
	out := &testutil.SyncBuffer{}
	f := &fixture{proj: proj, out: out, r: newRunner(proj.Root, proj.Inventory, out, testWriter{t})}
	// The same env name and subnet, now on the qemu provider.
	os.WriteFile(filepath.Join(proj.Root, "envs", proj.Env+".yaml"), []byte(fmt.Sprintf(`version: 1
provider:
  type: qemu
  qemu: {subnet: %s, memory_mb: 512}
timeouts: {boot: %s, ssh: 15s, ping: 2s}
roles:
  workers: {prefix: v, count: 1, min: 1, max: 2}
`, proj.Subnet, boot)), 0o644)
	t.Cleanup(func() {
		f.r.withEnv(context.Background(), proj.Env, func(s *session) error {
			if td, ok := s.prov.(provider.Teardowner); ok {
				td.Teardown(context.Background())
			}
			return nil
		})
	})
	return f
}

// A VM built from the image boots, phones home and answers SSH with the key
// it phoned home with.
func TestQemu_VMBootsAndPhonesHome(t *testing.T) {
	f := qemuProject(t, "4m")
	ctx := context.Background()
	start := time.Now()
	f.must(t, f.r.ImageBuild(ctx, f.proj.Env, "v1"))
	t.Logf("image:build (base image cached in /var/cache/booted/images after the first): %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "v1"))
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	f.must(t, f.r.HostsFilter(ctx, f.proj.Env))
	h := f.hosts(t)["v1"]
	t.Logf("boot to ready: %v", time.Since(start).Round(time.Millisecond))
	if h.State != "ready" || !strings.HasPrefix(h.HostKey, "ssh-ed25519 ") {
		t.Fatalf("v1: %+v", h)
	}
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, f.proj.Env, "hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; systemd-analyze | head -1"))
	out := f.out.String()
	if !strings.Contains(out, "v1 | v1\n") || !strings.Contains(out, strings.Fields(h.HostKey)[1]) {
		t.Errorf("the VM's name or key differ from what it phoned home:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(out))

	// Stop it (ACPI over QMP) and clone it: the copy has its own MAC and address.
	start = time.Now()
	f.must(t, f.r.ImageStop(ctx, f.proj.Env, "v1"))
	t.Logf("image:stop: %v", time.Since(start).Round(time.Millisecond))
	f.must(t, f.r.ImageClone(ctx, f.proj.Env, "v1", "v2"))
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.ImageList(ctx, f.proj.Env))
	f.r.JSON = false
	var imgs []imageRow
	if err := json.Unmarshal([]byte(f.out.String()), &imgs); err != nil || len(imgs) != 2 {
		t.Fatalf("image:list: %v %s", err, f.out)
	}
	if imgs[0].MAC == imgs[1].MAC || imgs[0].IP == imgs[1].IP || imgs[0].Power != "stopped" {
		t.Errorf("clone: %+v", imgs)
	}
}

// A VM that never phones home (its root disk is not there) is failed
// after the boot timeout, with its console's last lines in the reason.
func TestQemu_BrokenBootFails(t *testing.T) {
	f := qemuProject(t, "25s")
	f.r.QemuAppend = "root=/dev/vdz rootdelay=2"
	ctx := context.Background()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "v1"))
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	h := f.hosts(t)["v1"]
	if h.State != "failed" || !strings.Contains(h.Reason, "no phone-home within 25s") || !strings.Contains(h.Reason, "console:") {
		t.Fatalf("v1: %+v", h)
	}
	// The reason ends with the console's last line (initramfs waiting for the disk).
	b, _ := os.ReadFile(filepath.Join(f.proj.Inventory, f.proj.Env, "console", "v1.log"))
	last := provider.ConsoleTail(b, 1)
	if last == "" || !strings.HasSuffix(h.Reason, last) {
		t.Errorf("the reason does not end with the console's last line %q: %s", last, h.Reason)
	}
	t.Logf("reason: %s", h.Reason)
}
