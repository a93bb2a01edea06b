// Package vbox provides VirtualBox VMs installed with kickstart, as the
// seed's vbox.sh built them: createvm, modifyvm, a SATA disk, a NAT NIC that
// PXE-boots from VirtualBox's own TFTP server (whose tree must sit under
// ~/.config/VirtualBox/TFTP: the seed's gotcha), a second NIC on a host-only
// or bridged network, headless start. It drives VBoxManage and nothing else.
package vbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"booted/internal/config"
	"booted/internal/kickstart"
	"booted/internal/pkgs"
	"booted/internal/provider"
)

// ErrNoVBoxManage is returned when VBoxManage is not installed.
var ErrNoVBoxManage = errors.New("VBoxManage not found on PATH: install VirtualBox from virtualbox.org (Debian 12 has no virtualbox package), or use the local or qemu provider")

// Provider makes the VMs of one environment.
type Provider struct {
	env *config.Env
	set *Settings
	// Bin is the VBoxManage command.
	Bin string
	// TFTP is VirtualBox's NAT TFTP root (~/.config/VirtualBox/TFTP).
	TFTP string
	// KickstartURL is where the controller serves kickstart files (…/kickstart/).
	KickstartURL string
	// Dir keeps the provider's notes (inventory/ENV/vbox).
	Dir string
	// StopTimeout bounds the ACPI shutdown before a hard power-off.
	StopTimeout time.Duration
	// Kickstart renders a host's kickstart into the served directory.
	Kickstart func(spec provider.Spec) error
	// Served is the directory the controller serves at KickstartURL; a
	// clone's identity goes in its identity/ directory.
	Served string
}

// Interface guards: what VirtualBox VMs can do.
var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Power    = (*Provider)(nil)
	_ provider.Deleter  = (*Provider)(nil)
	_ provider.Cloner   = (*Provider)(nil)
	_ provider.Console  = (*Provider)(nil)
	_ provider.Netboot  = (*Provider)(nil)
)

// Open returns the vbox provider of env: its notes and disks go under
// o.Dir/vbox, each host's kickstart and a clone's identity under o.Served
// (served by the controller at o.ServedURL).
func Open(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
	if o.Install != nil { // the boot loader files it copies into the TFTP tree
		if err := o.Install(ctx, Needs); err != nil {
			return nil, err
		}
	}
	set, ok := env.Provider.Settings.(*Settings)
	if !ok {
		return nil, fmt.Errorf("%s: provider.vbox is missing", env.Path)
	}
	port := 0
	if len(o.Ports) > 0 {
		port = o.Ports[0]
	}
	render := func(s provider.Spec) error {
		ks, err := kickstart.Render(filepath.Join(o.Root, "kickstart"), set.Kickstart, kickstart.Data{
			Name: s.Name, Env: env.Name, AuthorizedKey: strings.TrimSpace(string(s.AuthorizedKey)), PhoneHome: string(s.PhoneHome), Token: s.Token,
			IdentityURL: o.ServedURL + "identity/", FailedURL: o.FailedURL, ServicePort: port,
		})
		if err != nil {
			return err
		}
		return writeServed(filepath.Join(o.Served, s.Name+".ks"), ks)
	}
	p, err := New(env, filepath.Join(o.Dir, "vbox"), o.ServedURL, render)
	if err != nil {
		return nil, err
	}
	p.Served = o.Served
	if o.VBoxManage != "" {
		p.Bin = o.VBoxManage
	}
	if o.VBoxTFTP != "" {
		p.TFTP = o.VBoxTFTP
	}
	return p, nil
}

// writeIdentity writes what a clone fetches by its first MAC at boot: its
// name and enrollment token.
func (p *Provider) writeIdentity(s provider.Spec, mac string) error {
	id := fmt.Sprintf("name=%s\ntoken=%s\n", s.Name, s.Token)
	return writeServed(filepath.Join(p.Served, "identity", strings.ToLower(mac)), []byte(id))
}

// writeServed writes a file the controller serves.
func writeServed(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// New returns the vbox provider of env.
func New(env *config.Env, dir, kickstartURL string, kickstart func(provider.Spec) error) (*Provider, error) {
	set, ok := env.Provider.Settings.(*Settings)
	if !ok {
		return nil, fmt.Errorf("%s: provider.vbox is missing", env.Path)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, err
	}
	return &Provider{env: env, set: set, Bin: "VBoxManage", TFTP: filepath.Join(home, ".config", "VirtualBox", "TFTP"),
		KickstartURL: kickstartURL, Dir: dir, StopTimeout: 60 * time.Second, Kickstart: kickstart}, nil
}

// VMName is the VirtualBox name of host name.
func (p *Provider) VMName(name string) string { return "booted-" + p.env.Name + "-" + name }

func (p *Provider) marker(name string) string { return "booted:" + p.env.Name + "/" + name }

// run runs VBoxManage.
func (p *Provider) run(ctx context.Context, args ...string) (string, error) {
	if _, err := exec.LookPath(p.Bin); err != nil {
		return "", ErrNoVBoxManage
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, p.Bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("VBoxManage %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// info returns showvminfo --machinereadable as a map; ok is false when
// there is no such VM.
func (p *Provider) info(ctx context.Context, vm string) (map[string]string, bool, error) {
	if _, err := exec.LookPath(p.Bin); err != nil {
		return nil, false, ErrNoVBoxManage
	}
	out, err := p.run(ctx, "showvminfo", vm, "--machinereadable")
	if err != nil {
		if strings.Contains(err.Error(), "VBOX_E_OBJECT_NOT_FOUND") || strings.Contains(err.Error(), "Could not find a registered machine") {
			return nil, false, nil
		}
		return nil, false, err
	}
	return parseMachineReadable(out), true, nil
}

// parseMachineReadable reads key="value" lines.
func parseMachineReadable(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		m[strings.Trim(k, `"`)] = strings.Trim(v, `"`)
	}
	return m
}

// macs returns the host's two MACs (VirtualBox writes them without colons),
// fresh for each generation (a clone gets generation > 0).
func (p *Provider) macs(name string, gen int) (string, string) {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%s/%d", p.env.Name, name, gen)
	s := h.Sum32()
	base := fmt.Sprintf("080027%02X%02X%02X", byte(s>>16), byte(s>>8), byte(s))
	return base, fmt.Sprintf("080028%02X%02X%02X", byte(s>>16), byte(s>>8), byte(s))
}

func dashed(mac string) string {
	var parts []string
	for i := 0; i+2 <= len(mac); i += 2 {
		parts = append(parts, strings.ToLower(mac[i:i+2]))
	}
	return strings.Join(parts, "-")
}

// checkOurs refuses a VM of that name that booted did not make.
func (p *Provider) checkOurs(info map[string]string, name string) error {
	if info["description"] != p.marker(name) {
		return fmt.Errorf("host %s: a VM named %s exists that booted did not make: rename or remove it (VBoxManage unregistervm %s), or pick another host name", name, p.VMName(name), p.VMName(name))
	}
	return nil
}

// Build creates and registers the VM, its disk and its PXE menu, and
// renders its kickstart; a VM booted made already is left as it is.
func (p *Provider) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	vm, v := p.VMName(s.Name), p.set
	info, exists, err := p.info(ctx, vm)
	if err != nil {
		return provider.Instance{}, err
	}
	if exists {
		if err := p.checkOurs(info, s.Name); err != nil {
			return provider.Instance{}, err
		}
		return p.instance(s.Name, info), nil
	}
	iso := v.ISO
	if iso != "" {
		if !filepath.IsAbs(iso) {
			iso = filepath.Join(filepath.Dir(filepath.Dir(p.env.Path)), iso)
		}
		if _, err := os.Stat(iso); err != nil {
			return provider.Instance{}, fmt.Errorf("host %s: ISO %s not found: download it and set provider.vbox.iso in %s", s.Name, iso, p.env.Path)
		}
	}
	mac1, mac2 := p.macs(s.Name, 0)
	if err := p.writePXE(s.Name, mac1, false); err != nil {
		return provider.Instance{}, err
	}
	if err := p.checkTFTP(); err != nil {
		return provider.Instance{}, err
	}
	if p.Kickstart != nil {
		if err := p.Kickstart(s); err != nil {
			return provider.Instance{}, err
		}
	}
	disk := filepath.Join(p.Dir, "disks", vm+".vdi")
	if err := os.MkdirAll(filepath.Dir(disk), 0o755); err != nil {
		return provider.Instance{}, err
	}
	nic2 := []string{"--nic2", "hostonly", "--hostonlyadapter2", v.Network.Name}
	if v.Network.Mode == "bridged" {
		nic2 = []string{"--nic2", "bridged", "--bridgeadapter2", v.Network.Name}
	}
	cpus, mem, diskGB := v.CPUs, v.MemoryMB, v.DiskGB
	if s.Size.CPUs > 0 { // an instance's size
		cpus, mem, diskGB = s.Size.CPUs, s.Size.MemoryMB, s.Size.DiskGB
	}
	steps := [][]string{
		{"createvm", "--name", vm, "--ostype", v.OSType, "--register"},
		append([]string{"modifyvm", vm, "--description", p.marker(s.Name), "--cpus", fmt.Sprint(cpus), "--memory", fmt.Sprint(mem),
			"--ioapic", "on", "--acpi", "on", "--boot1", "net", "--boot2", "disk", "--boot3", "none", "--boot4", "none",
			"--nic1", "nat", "--macaddress1", mac1, "--nattftpfile1", "pxelinux.0", "--macaddress2", mac2, "--uart1", "0x3F8", "4", "--uartmode1", "file", filepath.Join(p.Dir, "console", vm+".log")}, nic2...),
		{"createmedium", "disk", "--filename", disk, "--size", fmt.Sprint(diskGB * 1024), "--format", "VDI"},
		{"storagectl", vm, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci", "--portcount", "2"},
		{"storageattach", vm, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd", "--medium", disk},
	}
	if iso != "" {
		steps = append(steps, []string{"storageattach", vm, "--storagectl", "SATA", "--port", "1", "--device", "0", "--type", "dvddrive", "--medium", iso})
	}
	os.MkdirAll(filepath.Join(p.Dir, "console"), 0o755)
	for i, st := range steps {
		if _, err := p.run(ctx, st...); err != nil {
			if i > 0 { // do not leave half a VM behind
				p.run(context.WithoutCancel(ctx), "unregistervm", vm, "--delete")
			}
			return provider.Instance{}, fmt.Errorf("host %s: %w", s.Name, err)
		}
	}
	info, _, err = p.info(ctx, vm)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(s.Name, info), nil
}

// writePXE writes the per-MAC pxelinux menu: install with the host's
// kickstart, or (once installed) boot from the disk.
func (p *Provider) writePXE(name, mac string, installed bool) error {
	dir := filepath.Join(p.TFTP, "pxelinux.cfg")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("TFTP tree %s is not writable (%v): VirtualBox's NAT TFTP reads only that directory; fix its owner or permissions", p.TFTP, err)
	}
	var menu string
	if installed {
		menu = fmt.Sprintf("# booted: %s is installed; boot from its disk.\ndefault local\nlabel local\n  localboot 0\n", p.marker(name))
	} else {
		menu = fmt.Sprintf(`# booted: install %[1]s with kickstart.
default install
prompt 0
timeout 1
label install
  kernel booted/%[2]s/vmlinuz
  append initrd=booted/%[2]s/initrd.img inst.ks=%[3]s%[4]s.ks inst.text console=ttyS0,115200 ip=dhcp
`, p.marker(name), p.env.Name, p.KickstartURL, name)
	}
	path := filepath.Join(dir, "01-"+dashed(mac))
	if err := os.WriteFile(path+".tmp", []byte(menu), 0o644); err != nil {
		return fmt.Errorf("TFTP tree %s is not writable (%v): fix its owner or permissions", p.TFTP, err)
	}
	return os.Rename(path+".tmp", path)
}

// bootFiles are the TFTP tree's boot loader files and where Debian's
// pxelinux and syslinux-common packages put them.
var bootFiles = map[string]string{
	"pxelinux.0":  pxelinux,
	"ldlinux.c32": ldlinux,
}

const (
	pxelinux = "/usr/lib/PXELINUX/pxelinux.0"
	ldlinux  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// Needs are the files the provider copies from Debian's packages
// (VirtualBox itself is not one).
var Needs = pkgs.Need{pxelinux: "pxelinux", ldlinux: "syslinux-common"}

// checkTFTP makes sure the tree has what a PXE install needs: the boot
// loader (copied from Debian's packages when they are installed) and the
// installer's kernel and initrd from the ISO.
func (p *Provider) checkTFTP() error {
	for name, src := range bootFiles {
		dst := filepath.Join(p.TFTP, name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("TFTP tree %s lacks %s: install Debian's pxelinux and syslinux-common (apt-get install pxelinux syslinux-common) and booted copies it, or put it there", p.TFTP, name)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return fmt.Errorf("TFTP tree %s is not writable (%v)", p.TFTP, err)
		}
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(p.TFTP, "booted", p.env.Name, f)); err != nil {
			return fmt.Errorf("TFTP tree lacks booted/%s/%s: copy images/pxeboot/vmlinuz and initrd.img from the ISO (%s) into %s", p.env.Name, f, p.set.ISO, filepath.Join(p.TFTP, "booted", p.env.Name))
		}
	}
	return nil
}

// Installed is called once the host phoned home: its next boot is from disk.
func (p *Provider) Installed(ctx context.Context, name string) error {
	info, ok, err := p.info(ctx, p.VMName(name))
	if err != nil || !ok {
		return err
	}
	if err := p.writePXE(name, info["macaddress1"], true); err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(p.Dir, "installed"), 0o755)
	if err := os.WriteFile(filepath.Join(p.Dir, "installed", name), nil, 0o644); err != nil {
		return err
	}
	if info["VMState"] != "running" {
		_, err = p.run(ctx, "modifyvm", p.VMName(name), "--boot1", "disk", "--boot2", "net")
	}
	return err
}

// Start boots the VM headless (building it first if needed). This boot's
// enrollment token goes where the VM will fetch it: its kickstart if it
// installs, its identity (by its first MAC) if it is a clone.
func (p *Provider) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	in, err := p.Build(ctx, s)
	if err != nil || in.State == provider.Running {
		return in, err
	}
	_, statErr := os.Stat(filepath.Join(p.Dir, "installed", s.Name))
	installed := statErr == nil
	if !installed && p.Kickstart != nil {
		if err := p.Kickstart(s); err != nil {
			return in, err
		}
	}
	if p.Served != "" && s.Token != "" && in.MAC != "" {
		if err := p.writeIdentity(s, in.MAC); err != nil {
			return in, err
		}
	}
	if installed {
		// installed: boot from the disk, netboot only as a fallback
		if _, err := p.run(ctx, "modifyvm", p.VMName(s.Name), "--boot1", "disk", "--boot2", "net"); err != nil {
			return in, fmt.Errorf("host %s: %w", s.Name, err)
		}
	}
	if _, err := p.run(ctx, "startvm", p.VMName(s.Name), "--type", "headless"); err != nil {
		return in, fmt.Errorf("host %s: %w", s.Name, err)
	}
	in.State = provider.Running
	return in, nil
}

// Stop presses the ACPI power button and powers off hard after StopTimeout.
func (p *Provider) Stop(ctx context.Context, name string) error {
	vm := p.VMName(name)
	info, ok, err := p.info(ctx, vm)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("host %s: %w", name, provider.ErrNoInstance)
	}
	if info["VMState"] != "running" {
		return nil
	}
	if _, err := p.run(ctx, "controlvm", vm, "acpipowerbutton"); err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	deadline := time.Now().Add(p.StopTimeout)
	for time.Now().Before(deadline) {
		info, _, err := p.info(ctx, vm)
		if err != nil {
			return err
		}
		if info["VMState"] != "running" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	_, err = p.run(ctx, "controlvm", vm, "poweroff")
	return err
}

// ErrRunning is returned by Delete for a running VM.
var ErrRunning = provider.ErrRunning

// Delete unregisters the VM and deletes its files; a running VM is refused.
func (p *Provider) Delete(ctx context.Context, name string) error {
	vm := p.VMName(name)
	info, ok, err := p.info(ctx, vm)
	if err != nil || !ok {
		return err
	}
	if err := p.checkOurs(info, name); err != nil {
		return err
	}
	if info["VMState"] == "running" {
		return fmt.Errorf("host %s: %w", name, ErrRunning)
	}
	if _, err := p.run(ctx, "unregistervm", vm, "--delete"); err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	os.Remove(filepath.Join(p.TFTP, "pxelinux.cfg", "01-"+dashed(info["macaddress1"])))
	return nil
}

// List returns every VM of the environment with its state.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	out, err := p.run(ctx, "list", "vms")
	if err != nil {
		return nil, err
	}
	prefix := "booted-" + p.env.Name + "-"
	var res []provider.Instance
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 1 {
			continue
		}
		vm := strings.Trim(f[0], `"`)
		if !strings.HasPrefix(vm, prefix) {
			continue
		}
		info, ok, err := p.info(ctx, vm)
		if err != nil {
			return nil, err
		}
		if ok {
			res = append(res, p.instance(strings.TrimPrefix(vm, prefix), info))
		}
	}
	return res, nil
}

// Clone makes host name a linked clone of src (from a snapshot of src),
// with fresh MACs on every NIC; the controller tells the clone its name
// and token by its first MAC (identity written by the caller).
func (p *Provider) Clone(ctx context.Context, src string, s provider.Spec) (provider.Instance, error) {
	srcVM, vm := p.VMName(src), p.VMName(s.Name)
	info, ok, err := p.info(ctx, srcVM)
	if err != nil {
		return provider.Instance{}, err
	}
	if !ok {
		return provider.Instance{}, fmt.Errorf("host %s: %w (image:build it first)", src, provider.ErrNoInstance)
	}
	if err := p.checkOurs(info, src); err != nil {
		return provider.Instance{}, err
	}
	if _, exists, err := p.info(ctx, vm); err != nil || exists {
		if exists {
			err = fmt.Errorf("host %s: a VM named %s exists already", s.Name, vm)
		}
		return provider.Instance{}, err
	}
	if _, ok := info["SnapshotName"]; !ok {
		if _, err := p.run(ctx, "snapshot", srcVM, "take", "booted-clone-base", "--description", "base of booted's linked clones"); err != nil {
			return provider.Instance{}, err
		}
	}
	mac1, mac2 := p.macs(s.Name, 1)
	steps := [][]string{
		{"clonevm", srcVM, "--snapshot", "booted-clone-base", "--options", "link", "--name", vm, "--register"},
		{"modifyvm", vm, "--description", p.marker(s.Name), "--macaddress1", mac1, "--macaddress2", mac2, "--boot1", "disk", "--boot2", "net",
			"--uartmode1", "file", filepath.Join(p.Dir, "console", vm+".log")},
	}
	for _, st := range steps {
		if _, err := p.run(ctx, st...); err != nil {
			return provider.Instance{}, fmt.Errorf("host %s: %w", s.Name, err)
		}
	}
	if err := p.writePXE(s.Name, mac1, true); err != nil {
		return provider.Instance{}, err
	}
	if p.Served != "" { // the clone asks the controller who it is, by its first MAC
		if err := p.writeIdentity(s, mac1); err != nil {
			return provider.Instance{}, err
		}
	}
	info, _, err = p.info(ctx, vm)
	if err != nil {
		return provider.Instance{}, err
	}
	return p.instance(s.Name, info), nil
}

// ConsoleLog is the file the VM's first serial port is written to.
func (p *Provider) ConsoleLog(name string) string {
	return filepath.Join(p.Dir, "console", p.VMName(name)+".log")
}

func (p *Provider) instance(name string, info map[string]string) provider.Instance {
	st := provider.Off
	if info["VMState"] == "running" {
		st = provider.Running
	}
	return provider.Instance{Name: name, ID: p.VMName(name), MAC: info["macaddress1"], State: st}
}
