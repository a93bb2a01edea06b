// Package qemu provides virtual machines run by qemu on this machine: a
// Debian image built with debootstrap (cached), each VM a copy-on-write
// overlay of it with a small seed disk carrying its name, address, the
// deploy key and the phone-home script, on the environment's bridge through
// a tap device. KVM is used when it works here, else TCG.
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"booted/internal/bridge"
	"booted/internal/config"
	"booted/internal/pidfile"
	"booted/internal/pkgs"
	"booted/internal/provider"
	"booted/internal/provider/hostrec"
)

// Provider runs the VMs of one environment.
type Provider struct {
	env     *config.Env
	q       *Settings
	subnet  netip.Prefix
	gateway netip.Prefix
	bridge  string
	// Dir holds one directory per VM (inventory/ENV/vms).
	Dir string
	// ConsoleDir holds the serial console logs (inventory/ENV/console).
	ConsoleDir string
	// Log receives image build progress.
	Log io.Writer
	// ExtraAppend is added to the kernel command line (tests break boots with it).
	ExtraAppend string
	// StopTimeout bounds the ACPI shutdown before the VM is killed.
	StopTimeout time.Duration
}

// Interface guards: what qemu VMs can do.
var (
	_ provider.Provider   = (*Provider)(nil)
	_ provider.Power      = (*Provider)(nil)
	_ provider.Deleter    = (*Provider)(nil)
	_ provider.Cloner     = (*Provider)(nil)
	_ provider.Console    = (*Provider)(nil)
	_ provider.Preparer   = (*Provider)(nil)
	_ provider.Teardowner = (*Provider)(nil)
)

// Needs are the commands the qemu provider runs, and their Debian packages.
var Needs = pkgs.Need{"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "ip": "iproute2", "chroot": "coreutils", "nft": "nftables"}

// Open returns the qemu provider of env, installing what it needs; its
// files go under o.Dir (vms/, console/).
func Open(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
	if o.Install != nil {
		if err := o.Install(ctx, Needs); err != nil {
			return nil, err
		}
	}
	p, err := New(env, o.Dir)
	if err != nil {
		return nil, err
	}
	p.Log, p.ExtraAppend = o.Logger(), o.QemuAppend
	return p, nil
}

// New returns the qemu provider of env; state goes under envDir.
func New(env *config.Env, envDir string) (*Provider, error) {
	q, ok := env.Provider.Settings.(*Settings)
	if !ok {
		return nil, fmt.Errorf("%s: provider.qemu is missing", env.Path)
	}
	gw, err := q.Gateway()
	if err != nil {
		return nil, fmt.Errorf("%s: provider.qemu.subnet: %w", env.Path, err)
	}
	abs, err := filepath.Abs(envDir)
	if err != nil {
		return nil, err
	}
	return &Provider{env: env, q: q, subnet: gw.Masked(), gateway: gw, bridge: bridge.Name(env.Name),
		Dir: filepath.Join(abs, "vms"), ConsoleDir: filepath.Join(abs, "console"), Log: io.Discard, StopTimeout: 30 * time.Second}, nil
}

// Bridge is the environment's bridge, where its VMs are.
func (p *Provider) Bridge() string { return p.bridge }

// Prepare creates the environment's bridge (the controller listens on it).
func (p *Provider) Prepare(ctx context.Context) error {
	return bridge.Ensure(ctx, p.bridge, p.gateway, "provider.qemu.subnet")
}

type vm struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	MAC  string `json:"mac"`
	Tap  string `json:"tap"`
}

// Locate says the VM's bridge and its tap there.
func (p *Provider) Locate(name string) (provider.Location, error) {
	v, err := p.load(name)
	if err != nil {
		return provider.Location{}, err
	}
	return provider.Location{Bridge: p.bridge, Port: v.Tap, Network: p.gateway.Masked().String()}, nil
}

func (p *Provider) vmDir(name string) string { return filepath.Join(p.Dir, name) }

func (p *Provider) load(name string) (vm, error) {
	var v vm
	b, err := os.ReadFile(filepath.Join(p.vmDir(name), "vm.json"))
	if errors.Is(err, os.ErrNotExist) {
		return v, fmt.Errorf("host %s: %w", name, provider.ErrNoInstance)
	}
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal(b, &v)
}

// allocate records a VM with a free address and a MAC of its own.
func (p *Provider) allocate(name string, gen int) (vm, error) {
	return hostrec.Allocate(p.Dir, name, p.subnet, p.load, func(v vm) string { return v.Addr }, func(a netip.Addr) (vm, error) {
		return p.create(name, gen, a)
	})
}

// create records a new VM with address a.
func (p *Provider) create(name string, gen int, a netip.Addr) (vm, error) {
	v := vm{Name: name, Addr: a.String(), MAC: bridge.MAC("52:54", fmt.Sprintf("%s/%s/%d", p.env.Name, name, gen)),
		Tap: bridge.ShortName("bq", p.env.Name, name)}
	if err := os.MkdirAll(p.vmDir(name), 0o700); err != nil {
		return v, err
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return v, os.WriteFile(filepath.Join(p.vmDir(name), "vm.json"), b, 0o600)
}

// Build makes the VM's disk (an overlay of the base image, building that
// first if needed) and its seed disk.
func (p *Provider) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	return p.build(ctx, s, "", 0)
}

func (p *Provider) build(ctx context.Context, s provider.Spec, cloneOf string, gen int) (provider.Instance, error) {
	img, err := p.Image(ctx, p.Log)
	if err != nil {
		return provider.Instance{}, err
	}
	v, err := p.allocate(s.Name, gen)
	if err != nil {
		return provider.Instance{}, err
	}
	disk := filepath.Join(p.vmDir(s.Name), "disk.qcow2")
	if _, err := os.Stat(disk); err != nil {
		var cmd *exec.Cmd
		if cloneOf != "" {
			cmd = exec.CommandContext(ctx, "qemu-img", "convert", "-O", "qcow2", filepath.Join(p.vmDir(cloneOf), "disk.qcow2"), disk+".tmp")
		} else {
			cmd = exec.CommandContext(ctx, "qemu-img", "create", "-f", "qcow2", "-b", img.Disk, "-F", "qcow2", disk+".tmp")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return provider.Instance{}, fmt.Errorf("host %s: %v: %s", s.Name, err, out)
		}
		if cloneOf == "" { // an overlay of the image (a clone's disk is a full copy)
			if err := img.addUser(disk); err != nil {
				return provider.Instance{}, fmt.Errorf("host %s: %w", s.Name, err)
			}
		}
		if err := os.Rename(disk+".tmp", disk); err != nil {
			return provider.Instance{}, err
		}
	}
	if err := p.writeSeed(ctx, v, s, cloneOf != ""); err != nil {
		return provider.Instance{}, fmt.Errorf("host %s: seed disk: %w", s.Name, err)
	}
	return p.instance(v), nil
}

// writeSeed makes the seed disk: the files booted-seed copies into the VM.
func (p *Provider) writeSeed(ctx context.Context, v vm, s provider.Spec, clone bool) error {
	dir := filepath.Join(p.vmDir(v.Name), "seed")
	os.RemoveAll(dir)
	files := map[string]string{}
	for rel, content := range SeedFiles(s, v.MAC, v.Addr, p.subnet.Bits(), p.gateway.Addr().String()) {
		files["files/"+rel] = content
	}
	if clone {
		files["regen-host-keys"] = ""
	}
	for rel, content := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		switch {
		case strings.HasSuffix(rel, "phone-home.sh"):
			mode = 0o700
		case strings.HasSuffix(rel, "authorized_keys"), strings.HasSuffix(rel, "enroll-token"):
			mode = 0o600
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "files", "root"), 0o700)
	os.Chmod(filepath.Join(dir, "files", "root", ".ssh"), 0o700)
	img := filepath.Join(p.vmDir(v.Name), "seed.img")
	os.Remove(img)
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-L", "BOOTEDSEED", "-d", dir, img, "8M").CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	return os.RemoveAll(dir)
}

// pid returns the pid of the VM's qemu, or 0.
func (p *Provider) pid(name string) int {
	return pidfile.Read(filepath.Join(p.vmDir(name), "qemu.pid"), p.vmDir(name))
}

// Confined are the arguments that make a qemu run as nobody under its
// seccomp filter once its devices are open: a guest that breaks out of
// the emulator is not root here. (spawn=deny and elevateprivileges=deny
// kill qemu 7.2 with SIGSYS under -daemonize and -runas.)
var Confined = []string{"-sandbox", "on,obsolete=deny,resourcecontrol=deny", "-runas", "nobody"}

// ConsoleLog is the file the VM's serial console is written to.
func (p *Provider) ConsoleLog(name string) string { return filepath.Join(p.ConsoleDir, name+".log") }

// Start boots the VM (building it first if needed) in the background.
func (p *Provider) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	in, err := p.Build(ctx, s)
	if err != nil {
		return in, err
	}
	v, err := p.load(s.Name)
	if err != nil {
		return in, err
	}
	if p.pid(s.Name) != 0 {
		in.State = provider.Running
		return in, nil
	}
	if err := p.Prepare(ctx); err != nil {
		return in, err
	}
	if !bridge.LinkExists(v.Tap) {
		if err := bridge.IP(ctx, fmt.Sprintf("tuntap add %s mode tap\nlink set %s master %s up\n", v.Tap, v.Tap, p.bridge)); err != nil {
			return in, fmt.Errorf("host %s: %w", s.Name, err)
		}
	}
	// Its port passes only its own MAC and address (bridge.Guard): a
	// VM's root cannot take another's address or answer for the gateway.
	if addr, err := netip.ParseAddr(v.Addr); err != nil {
		return in, fmt.Errorf("host %s: address %q: %w", s.Name, v.Addr, err)
	} else if err := bridge.Guard(ctx, "", p.env.Name, v.Tap, v.MAC, addr); err != nil {
		bridge.Remove(context.WithoutCancel(ctx), v.Tap)
		return in, fmt.Errorf("host %s: %w", s.Name, err)
	}
	img, err := p.Image(ctx, p.Log)
	if err != nil {
		return in, err
	}
	accel := p.accel(ctx, img)
	dir := p.vmDir(s.Name)
	os.MkdirAll(p.ConsoleDir, 0o755)
	os.Remove(filepath.Join(dir, "qmp.sock"))
	cpu := "qemu64"
	if accel == "kvm" {
		cpu = "host"
	}
	mem, cpus := p.q.MemoryMB, p.q.CPUs
	if s.Size.CPUs > 0 { // an instance's size
		mem, cpus = s.Size.MemoryMB, s.Size.CPUs
	}
	kargs := "root=LABEL=bootedroot rw console=ttyS0 net.ifnames=0 " + p.ExtraAppend
	if s.Instance {
		kargs += " " + CloudInitOn
	}
	args := []string{"-name", "booted-" + p.env.Name + "-" + s.Name, "-machine", "pc", "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus), "-display", "none", "-vga", "none", "-nodefaults",
		// appended to (a console log booted caps in place keeps its writer)
		"-chardev", "file,id=console,append=on,path=" + p.ConsoleLog(s.Name), "-serial", "chardev:console",
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", strings.TrimSpace(kargs),
		"-drive", "file=" + filepath.Join(dir, "disk.qcow2") + ",if=virtio,format=qcow2",
		"-drive", "file=" + filepath.Join(dir, "seed.img") + ",if=virtio,format=raw",
		"-netdev", "tap,id=n0,ifname=" + v.Tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + v.MAC,
		"-daemonize", "-pidfile", filepath.Join(dir, "qemu.pid")}
	args = append(args, Confined...)
	if out, err := exec.CommandContext(ctx, "qemu-system-x86_64", args...).CombinedOutput(); err != nil {
		bridge.Remove(context.WithoutCancel(ctx), v.Tap)
		return in, fmt.Errorf("host %s: qemu: %v: %s", s.Name, err, strings.TrimSpace(string(out)))
	}
	in.State = provider.Running
	return in, nil
}

// accel returns kvm when a short probe shows KVM boots the kernel here,
// else tcg; the answer is cached next to the images.
func (p *Provider) accel(ctx context.Context, img Image) string {
	if p.q.Accel != "auto" {
		return p.q.Accel
	}
	cache := filepath.Join(p.q.ImageDir, "accel")
	if b, err := os.ReadFile(cache); err == nil {
		return strings.TrimSpace(string(b))
	}
	got := "tcg"
	if _, err := os.Stat("/dev/kvm"); err == nil {
		log := filepath.Join(p.q.ImageDir, "kvm-probe.log")
		os.Remove(log)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		exec.CommandContext(pctx, "qemu-system-x86_64", "-machine", "pc", "-accel", "kvm", "-cpu", "host", "-m", "256",
			"-display", "none", "-vga", "none", "-nodefaults", "-no-reboot", "-serial", "file:"+log,
			"-kernel", img.Kernel, "-append", "console=ttyS0 panic=-1").Run()
		cancel()
		if b, _ := os.ReadFile(log); strings.Contains(string(b), "Kernel panic") || strings.Contains(string(b), "Freeing unused kernel") {
			got = "kvm"
		}
	}
	os.WriteFile(cache, []byte(got+"\n"), 0o644)
	return got
}

// Stop asks the VM to shut down (ACPI, through QMP) and kills it after
// StopTimeout.
func (p *Provider) Stop(ctx context.Context, name string) error {
	v, err := p.load(name)
	if err != nil {
		return err
	}
	pid := p.pid(name)
	if pid == 0 { // not running; its tap may be left from a start that failed
		bridge.Remove(context.WithoutCancel(ctx), v.Tap)
		return nil
	}
	if err := qmp(filepath.Join(p.vmDir(name), "qmp.sock"), "system_powerdown"); err != nil {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(p.StopTimeout)
	for p.pid(name) != 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if pid := p.pid(name); pid != 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(200 * time.Millisecond)
	}
	bridge.Remove(context.WithoutCancel(ctx), v.Tap)
	return nil
}

// qmp sends one command over the VM's QMP socket.
func qmp(sock, command string) error {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return err
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.Contains(line, `"return"`) {
				break
			}
			if strings.Contains(line, `"error"`) {
				return fmt.Errorf("qmp %s: %s", cmd, line)
			}
		}
	}
	return nil
}

// Delete removes the VM's disk, seed and console log; a running VM is
// refused (ErrRunning): stop it first.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if _, err := p.load(name); errors.Is(err, provider.ErrNoInstance) {
		return nil
	}
	if p.pid(name) != 0 {
		return fmt.Errorf("host %s: %w", name, provider.ErrRunning)
	}
	return p.remove(ctx, name)
}

// remove stops the VM and removes its files.
func (p *Provider) remove(ctx context.Context, name string) error {
	if err := p.Stop(ctx, name); err != nil {
		return err
	}
	if v, err := p.load(name); err == nil {
		if err := bridge.Unguard(ctx, "", p.env.Name, v.Tap); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
	}
	os.Remove(p.ConsoleLog(name))
	return os.RemoveAll(p.vmDir(name))
}

// List returns every VM of the environment.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	vms, err := hostrec.Records(p.Dir, p.load)
	var out []provider.Instance
	for _, v := range vms {
		out = append(out, p.instance(v))
	}
	return out, err
}

// Clone makes a full copy of src's disk for name, with its own MAC,
// address, name and (regenerated at its first boot) host keys.
func (p *Provider) Clone(ctx context.Context, src string, s provider.Spec) (provider.Instance, error) {
	if _, err := p.load(src); err != nil {
		return provider.Instance{}, err
	}
	if _, err := p.load(s.Name); err == nil {
		return provider.Instance{}, fmt.Errorf("host %s exists already", s.Name)
	}
	if p.pid(src) != 0 {
		return provider.Instance{}, fmt.Errorf("host %s is running: stop it before cloning it (image:stop)", src)
	}
	return p.build(ctx, s, src, 1)
}

// Teardown stops and deletes every VM, and removes the bridge.
func (p *Provider) Teardown(ctx context.Context) error {
	vms, err := hostrec.Records(p.Dir, p.load)
	errs := []error{err}
	for _, v := range vms {
		errs = append(errs, p.remove(ctx, v.Name))
	}
	return errors.Join(append(errs, bridge.Remove(ctx, p.bridge), bridge.Unguarded(ctx, "", p.env.Name))...)
}

func (p *Provider) instance(v vm) provider.Instance {
	st := provider.Off
	if p.pid(v.Name) != 0 {
		st = provider.Running
	}
	return provider.Instance{Name: v.Name, ID: "booted-" + p.env.Name + "-" + v.Name, Addr: v.Addr, MAC: v.MAC, State: st}
}
