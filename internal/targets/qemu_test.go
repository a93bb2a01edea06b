package targets

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"booted/internal/bridge"
	"booted/internal/provider"
	"booted/internal/testutil"
)

// qemuProject is a project whose environment runs qemu VMs on a free subnet
// (the caller holds the machine's CPU lock: a TCG VM takes a core).
func qemuProject(t *testing.T, boot string, extra ...string) *fixture {
	testutil.RequireQemu(t)
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
%s`, proj.Subnet, boot, strings.Join(extra, ""))), 0o644)
	t.Cleanup(func() {
		f.r.withEnv(context.Background(), proj.Env, func(s *session) error {
			if td, ok := s.Provs.ByType[s.Env.Provider.Type].(provider.Teardowner); ok {
				td.Teardown(context.Background())
			}
			return nil
		})
	})
	return f
}

// Two tests of one single-CPU VM each, at once: a TCG VM takes one core of
// the two, so together they take the machine's CPU lock for as long as the
// longer one (they took it one after the other: 45 s, then 43 s).
func TestQemu_OneVMEach(t *testing.T) {
	testutil.RequireQemu(t)
	testutil.ExclusiveCPU(t) // released when both are done
	t.Run("VMBootsAndPhonesHome", func(t *testing.T) { t.Parallel(); vmBootsAndPhonesHome(t) })
	t.Run("BrokenBootFails", func(t *testing.T) { t.Parallel(); brokenBootFails(t) })
}

// A VM built from the image boots, phones home and answers SSH with the key
// it phoned home with.
func vmBootsAndPhonesHome(t *testing.T) {
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
	if err := unmarshalRows([]byte(f.out.String()), &imgs); err != nil || len(imgs) != 2 {
		t.Fatalf("image:list: %v %s", err, f.out)
	}
	if imgs[0].MAC == imgs[1].MAC || imgs[0].IP == imgs[1].IP || imgs[0].Power != "stopped" {
		t.Errorf("clone: %+v", imgs)
	}
}

// A VM that never phones home (its root disk is not there) is failed
// after the boot timeout, with its console's last lines in the reason.
func brokenBootFails(t *testing.T) {
	f := qemuProject(t, "12s")
	f.r.QemuAppend = "root=/dev/vdz rootdelay=2"
	var errs testutil.SyncBuffer
	f.r.Err = io.MultiWriter(f.r.Err, &errs)
	ctx := context.Background()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "v1"))
	f.must(t, f.r.HostsLogged(ctx, f.proj.Env))
	// The wait was shown (the landed one printed nothing for minutes).
	if !regexp.MustCompile(`: 1 booting, waiting for them to phone home: v1 \d+s \(boot timeout 12s\)`).MatchString(errs.String()) {
		t.Errorf("nothing said while v1 booted:\n%s", errs.String())
	}
	h := f.hosts(t)["v1"]
	if h.State != "failed" || !strings.Contains(h.Reason, "no phone-home within 12s") || !strings.Contains(h.Reason, "console:") {
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

// An instance on a qemu VM, through the targets: instances:run (a size of
// the env file, a key pair, #cloud-config user data) waits until it runs;
// the image's cloud-init, its EC2 datasource at the metadata service, ran
// the user data and authorized the key pair's key; ssh -i that key logs
// in with strict host key checking; the VM has the size's memory and
// CPUs; the console shows cloud-init; terminate removes the VM.
func TestQemu_Instance(t *testing.T) {
	testutil.RequireQemu(t)
	testutil.ExclusiveCPU(t) // a TCG VM of two CPUs: both cores
	f := qemuProject(t, "5m", "sizes:\n  q.small: {cpus: 2, memory_mb: 700, disk_gb: 4}\n  q.huge: {cpus: 1, memory_mb: 900000000, disk_gb: 4}\n")
	ctx := context.Background()
	env := f.proj.Env
	key := newSSHKey(t)
	f.r.User = "alice"
	f.must(t, f.r.KeypairImport(ctx, env, "laptop", key+".pub"))
	// #cloud-config: a format only cloud-init runs (booted's own first-boot
	// step takes #! scripts alone).
	ud := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(ud, []byte("#cloud-config\nwrite_files:\n  - path: /root/from-cloud-config\n    content: written by cloud-init\nruncmd:\n  - [sh, -c, 'echo \"ran on $(hostname)\" > /root/user-data-ran']\n"), 0o644)
	// A size qemu cannot give: run fails at once, and the instance is left
	// terminated with qemu's own words as its reason (StateReason).
	f.r.KeyName, f.r.InstanceType, f.r.UserData = "laptop", "q.huge", ud
	f.r.JSON = true
	if err := f.r.InstancesRun(ctx, env, "ami-debian12", 1); err == nil || !strings.Contains(err.Error(), "qemu:") {
		t.Fatalf("instances:run of q.huge: %v", err)
	}
	f.out.Reset()
	f.must(t, f.r.InstancesDescribe(ctx, env))
	var huge []instanceRow
	if unmarshalRows([]byte(f.out.String()), &huge); len(huge) != 1 || huge[0].State != "terminated" || !strings.Contains(huge[0].Reason, "qemu:") {
		t.Fatalf("the q.huge instance in describe: %+v", huge)
	}
	t.Logf("q.huge: %s", huge[0].Reason)
	if tap := bridge.ShortName("bq", env, huge[0].ID); bridge.LinkExists(tap) {
		t.Errorf("the q.huge instance that never ran left its tap %s", tap)
	}
	f.r.InstanceType = "q.small"
	f.r.JSON = true
	f.out.Reset()
	start := time.Now()
	f.must(t, f.r.InstancesRun(ctx, env, "ami-debian12", 1))
	t.Logf("instances:run to running: %v", time.Since(start).Round(time.Second))
	var rows []instanceRow
	if err := unmarshalRows([]byte(f.out.String()), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("instances:run printed %v %s", err, f.out)
	}
	in := rows[0]
	if in.State != "running" || in.Address == "" || in.Type != "q.small" {
		t.Fatalf("after instances:run: %+v", in)
	}
	known := filepath.Join(f.proj.Inventory, env, "known_hosts")
	// cloud-init's last stage runs after boot, as on EC2: wait for it.
	out, err := sshKey(key, known, in.Address, "cloud-init status --wait >/dev/null; cloud-init status; hostname; cat /root/user-data-ran /root/from-cloud-config; echo; nproc; awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo; systemd-analyze | head -1")
	t.Logf("on the instance: %s", out)
	lines := strings.Split(out, "\n")
	if err != nil || len(lines) < 7 {
		t.Fatalf("ssh -i the key pair's key: %v %s", err, out)
	}
	if lines[0] != "status: done" || lines[1] != in.ID || lines[2] != "ran on "+in.ID || lines[3] != "written by cloud-init" {
		t.Errorf("cloud-init did not run the user data: %q", lines[:4])
	}
	if lines[4] != "2" {
		t.Errorf("nproc = %s, want q.small's 2", lines[4])
	}
	if mb, _ := strconv.Atoi(lines[5]); mb < 550 || mb > 700 {
		t.Errorf("MemTotal %s MiB, want about q.small's 700", lines[5])
	}
	// The escape suite's part for a VM: qemu runs as nobody under its
	// seccomp filter, and the tenant, root in the VM, reaches none of the
	// controller's services on the bridge's address.
	pid, _ := os.ReadFile(filepath.Join(f.proj.Inventory, env, "vms", in.ID, "qemu.pid"))
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/status")
	if err != nil || !regexp.MustCompile(`(?m)^Uid:\t65534\t`).Match(status) || !regexp.MustCompile(`(?m)^Seccomp:\t2$`).Match(status) {
		t.Errorf("%s's qemu (pid %s) runs as root or without its seccomp filter: %v\n%s", in.ID, pid, err, status)
	}
	gw, err := sshKey(key, known, in.Address, "ip route show default | awk '{print $3}'") // the bridge's address
	if err != nil || net.ParseIP(gw) == nil {
		t.Fatalf("the instance's gateway: %v %q", err, gw)
	}
	tryEscapes(t, func(cmd string) (string, error) { return sshKey(key, known, in.Address, cmd) }, controllerPorts(t, gw))
	f.out.Reset()
	f.must(t, f.r.InstancesConsole(ctx, env, in.ID))
	if c := f.out.String(); !strings.Contains(c, "Cloud-init v.") || !strings.Contains(c, "finished at") {
		t.Errorf("instances:console does not show cloud-init:\n%s", provider.ConsoleTail([]byte(c), 20))
	}
	f.must(t, f.r.InstancesTerminate(ctx, env, in.ID))
	if _, err := os.Stat(filepath.Join(f.proj.Inventory, env, "vms", in.ID)); !os.IsNotExist(err) {
		t.Errorf("terminated %s still has its VM directory: %v", in.ID, err)
	}
}
