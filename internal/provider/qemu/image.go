package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"booted/internal/bridge"
	"booted/internal/provider"
)

// packages the image gets on top of debootstrap's minbase (dbus: for
// logind, which turns the ACPI power button into a clean shutdown).
var packages = []string{"systemd-sysv", "udev", "kmod", "openssh-server", "curl", "ca-certificates",
	"iproute2", "linux-image-cloud-amd64", "e2fsprogs", "nginx-light", "dbus"}

// aptPackages are installed with apt-get in the debootstrapped root:
// debootstrap's own resolver fails on cloud-init's Python dependencies
// (python3-cryptography). cloud-init: instances run their user data with
// it; other hosts boot with it disabled.
var aptPackages = []string{"cloud-init"}

// imageVersion changes whenever customize changes, so images are rebuilt.
const imageVersion = "8"

// CloudInitOn is the kernel argument that turns the image's cloud-init on
// (it wins over the image's /etc/cloud/cloud-init.disabled): instances
// boot with it, other hosts without.
const CloudInitOn = "cloud-init=enabled"

// cloudCfg is cloud-init's configuration in the image: the EC2 datasource
// alone, at booted's metadata service (169.254.169.254, answered by the
// controller for each instance), not strict about the platform (this is no
// AWS machine: no DMI to recognise, no IMDSv2 token to fetch); booted owns
// the network, host keys and root's keys, so cloud-init only adds the
// key pair's key to root and runs the user data (and the modules a
// #cloud-config names: write_files, runcmd, bootcmd). Its output goes to
// the console, which get-console-output returns.
const cloudCfg = `# booted: cloud-init for instances (enabled by cloud-init=enabled on the kernel command line)
datasource_list: [ Ec2, None ]
datasource:
  Ec2:
    strict_id: false
    metadata_urls: [ 'http://169.254.169.254' ]
    timeout: 5
    max_wait: 60
network: {config: disabled}
users: []
disable_root: false
ssh_deletekeys: false
ssh_genkeytypes: []
preserve_hostname: false
manage_etc_hosts: true
cloud_init_modules: [seed_random, bootcmd, write-files, set_hostname, update_hostname, update_etc_hosts, users-groups, ssh]
cloud_config_modules: [runcmd]
cloud_final_modules: [write-files-deferred, scripts-per-once, scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints, final-message]
`

// Image is a built base image.
type Image struct {
	Dir    string
	Disk   string // qcow2
	VDI    string // the same disk for VirtualBox
	Kernel string
	Initrd string
}

func (p *Provider) imageDir() string {
	h := sha256.Sum256([]byte(strings.Join(slices.Concat([]string{imageVersion, p.q.Suite, p.q.Mirror}, packages, aptPackages), "\n")))
	return filepath.Join(p.q.ImageDir, fmt.Sprintf("debian-%s-%s", p.q.Suite, hex.EncodeToString(h[:6])))
}

// Image returns the base image, building it first if it is not cached:
// debootstrap (from the Debian packages the machine reaches), then the
// customisation below, then an ext4 filesystem made straight from the
// directory (mkfs.ext4 -d, no mount) converted to qcow2, and a VDI export.
func (p *Provider) Image(ctx context.Context, log io.Writer) (Image, error) {
	dir := p.imageDir()
	img := Image{Dir: dir, Disk: filepath.Join(dir, "base.qcow2"), VDI: filepath.Join(dir, "base.vdi"),
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img")}
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		now := time.Now()
		os.Chtimes(filepath.Join(dir, "done"), now, now) // last used, for prune
		return img, nil
	}
	for _, c := range []string{"debootstrap", "mkfs.ext4", "qemu-img"} {
		if _, err := exec.LookPath(c); err != nil {
			return img, fmt.Errorf("building the qemu image needs %s: apt-get install debootstrap e2fsprogs qemu-utils", c)
		}
	}
	if err := os.MkdirAll(p.q.ImageDir, 0o755); err != nil {
		return img, err
	}
	unlock, err := bridge.LockFile(dir + ".lock")
	if err != nil {
		return img, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return img, nil // another process built it meanwhile
	}
	os.RemoveAll(dir)
	work := dir + ".build"
	os.RemoveAll(work)
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	start := time.Now()
	fmt.Fprintf(log, "qemu image: debootstrap %s from %s (a few minutes the first time)\n", p.q.Suite, p.q.Mirror)
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("qemu image: %s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out.String(), 15))
		}
		return nil
	}
	if err := run("debootstrap", "--variant=minbase", "--include="+strings.Join(packages, ","), p.q.Suite, root, p.q.Mirror); err != nil {
		return img, err
	}
	if err := aptInstall(ctx, root, aptPackages); err != nil {
		return img, err
	}
	if err := customize(ctx, root); err != nil {
		return img, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return img, err
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	initrds, _ := filepath.Glob(filepath.Join(root, "boot", "initrd.img-*"))
	if len(kernels) == 0 || len(initrds) == 0 {
		return img, fmt.Errorf("qemu image: no kernel or initrd in %s/boot", root)
	}
	raw := filepath.Join(work, "base.raw")
	if err := run("qemu-img", "create", "-f", "raw", raw, fmt.Sprintf("%dG", p.q.DiskGB)); err != nil {
		return img, err
	}
	if err := run("mkfs.ext4", "-q", "-F", "-L", "bootedroot", "-d", root, raw); err != nil {
		return img, err
	}
	if err := os.MkdirAll(work+"/out", 0o755); err != nil {
		return img, err
	}
	out := filepath.Join(work, "out")
	if err := run("qemu-img", "convert", "-O", "qcow2", raw, filepath.Join(out, "base.qcow2")); err != nil {
		return img, err
	}
	if err := run("qemu-img", "convert", "-O", "vdi", raw, filepath.Join(out, "base.vdi")); err != nil {
		return img, err
	}
	if err := run("cp", kernels[0], filepath.Join(out, "vmlinuz")); err != nil {
		return img, err
	}
	if err := run("cp", initrds[0], filepath.Join(out, "initrd.img")); err != nil {
		return img, err
	}
	if err := os.MkdirAll(filepath.Join(out, "users"), 0o755); err != nil {
		return img, err
	}
	if err := os.WriteFile(filepath.Join(out, "done"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return img, err
	}
	if err := os.Rename(out, dir); err != nil {
		return img, err
	}
	fmt.Fprintf(log, "qemu image: built %s in %v\n", dir, time.Since(start).Round(time.Second))
	prune(p.q.ImageDir, dir, log)
	return img, nil
}

// addUser records that the VM disk at path is an overlay of the image, so
// prune keeps the image while that disk exists; records of disks that are
// gone are dropped.
func (img Image) addUser(path string) error {
	users := filepath.Join(img.Dir, "users")
	if err := os.MkdirAll(users, 0o755); err != nil {
		return err
	}
	forgetGone(users)
	h := sha256.Sum256([]byte(path))
	return os.WriteFile(filepath.Join(users, hex.EncodeToString(h[:8])), []byte(path+"\n"), 0o644)
}

// pruneIdle is how long an image must have gone unused before prune may
// remove it (another environment may be about to build a VM on it).
const pruneIdle = 24 * time.Hour

// prune removes the images in dir other than keep that have not been used
// for pruneIdle and that no VM disk is an overlay of any more (their
// recorded users are all gone), so the cache holds the images in use, not
// every one ever built. It runs after each build.
func prune(dir, keep string, log io.Writer) {
	old, _ := filepath.Glob(filepath.Join(dir, "debian-*"))
	for _, d := range old {
		if d == keep || strings.HasSuffix(d, ".lock") || strings.HasSuffix(d, ".build") {
			continue
		}
		if st, err := os.Stat(filepath.Join(d, "done")); err != nil || time.Since(st.ModTime()) < pruneIdle {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "users")); err != nil {
			fmt.Fprintf(log, "qemu image: kept the older %s: it predates the record of its VMs; remove it by hand once no VM uses it\n", d)
			continue
		}
		if inUse := users(d); len(inUse) > 0 {
			fmt.Fprintf(log, "qemu image: kept the older %s: %d VM disks are overlays of it (%s)\n", filepath.Base(d), len(inUse), inUse[0])
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(log, "qemu image: could not remove the older %s: %v\n", d, err)
			continue
		}
		os.Remove(d + ".lock")
		fmt.Fprintf(log, "qemu image: removed the older %s (no VM uses it)\n", filepath.Base(d))
	}
}

// users returns the recorded VM disks of the image in d that still exist.
func users(d string) []string {
	return forgetGone(filepath.Join(d, "users"))
}

// forgetGone removes the records in dir of VM disks that no longer exist
// and returns the disks that do. A disk being made (DISK.tmp, renamed to
// DISK when done) exists.
func forgetGone(dir string) (live []string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		disk := strings.TrimSpace(string(b))
		if disk == "" || !exists(disk) && !exists(disk+".tmp") {
			os.Remove(f)
			continue
		}
		live = append(live, disk)
	}
	return live
}

// customize prepares the rootfs: no host keys (each VM makes its own at
// first boot), systemd-networkd, cloud-init off unless the kernel command
// line turns it on (instances), and booted's two units: booted-seed copies
// the VM's own files (name, address, deploy key, phone-home script) from
// its seed disk, booted-phone-home runs the phone-home script at every boot.
func customize(ctx context.Context, root string) error {
	files := map[string]string{
		"etc/fstab": "LABEL=bootedroot / ext4 defaults 0 1\n",
		// No name server: hosts talk to the controller by address, and a
		// copy of the build machine's resolver sent their queries off the
		// bridge (cloud-init's DNS checks waited 30 s on it under TCG).
		"etc/resolv.conf":                     "# booted: no name server (hosts reach the controller by address)\n",
		"etc/cloud/cloud-init.disabled":       "booted: cloud-init runs on instances only (kernel argument " + CloudInitOn + ")\n",
		"etc/cloud/cloud.cfg.d/99_booted.cfg": cloudCfg,
		// One host key, ed25519 (the one booted pins): RSA key generation
		// took 10 s of each first boot under TCG.
		"etc/ssh/sshd_config.d/booted-hostkey.conf":           "HostKey /etc/ssh/ssh_host_ed25519_key\n",
		"etc/systemd/system/ssh.service.d/booted-keygen.conf": "[Service]\nExecStartPre=\nExecStartPre=/bin/sh -c '[ -s /etc/ssh/ssh_host_ed25519_key ] || /usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key'\nExecStartPre=/usr/sbin/sshd -t\n",
		"usr/local/sbin/booted-seed": `#!/bin/sh
# Copies this VM's own files from its seed disk (label BOOTEDSEED).
set -e
mkdir -p /run/booted-seed
mount -o ro LABEL=BOOTEDSEED /run/booted-seed
if [ -e /run/booted-seed/regen-host-keys ] && [ ! -e /etc/booted/keys-regenerated ]; then
	rm -f /etc/ssh/ssh_host_*   # a clone: its own host keys
	mkdir -p /etc/booted && touch /etc/booted/keys-regenerated
fi
cp -a /run/booted-seed/files/. /
umount /run/booted-seed
hostname "$(cat /etc/hostname)"
`,
		"etc/systemd/system/booted-seed.service": `[Unit]
Description=booted: this VM's files from its seed disk
DefaultDependencies=no
After=local-fs.target
Before=systemd-networkd.service ssh.service booted-phone-home.service
Wants=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/booted-seed
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`,
		"etc/systemd/system/booted-phone-home.service": `[Unit]
Description=booted phone-home
Wants=network-online.target
After=network-online.target ssh.service booted-seed.service

[Service]
Type=oneshot
ExecStart=/etc/booted/phone-home.sh

[Install]
WantedBy=multi-user.target
`,
	}
	for rel, content := range files {
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "usr/local/sbin/") {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			return err
		}
	}
	keys, _ := filepath.Glob(filepath.Join(root, "etc", "ssh", "ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	for _, unit := range []string{"systemd-networkd.service", "booted-seed.service", "booted-phone-home.service"} {
		if out, err := exec.CommandContext(ctx, "chroot", root, "systemctl", "enable", unit).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu image: enable %s: %v: %s", unit, err, out)
		}
	}
	// nginx is in the image for load balancers, which booted runs itself.
	// cloud-init's local stage does nothing here (its EC2 datasource
	// works from the network stage on a machine that is not AWS) and
	// took 8 s before the network under TCG.
	for _, unit := range []string{"nginx.service", "cloud-init-local.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"} {
		exec.CommandContext(ctx, "chroot", root, "systemctl", "mask", unit).Run()
	}
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("booted\n"), 0o644)
	return nil
}

// aptInstall installs pkgs in the root with its own apt-get (the
// debootstrap mirror, the host's resolver; no service started in it) and
// leaves no package cache behind.
func aptInstall(ctx context.Context, root string, pkgs []string) error {
	if len(pkgs) == 0 {
		return nil
	}
	policy := filepath.Join(root, "usr", "sbin", "policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return err
	}
	defer os.Remove(policy)
	if resolv, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		inRoot := filepath.Join(root, "etc", "resolv.conf")
		if was, err := os.ReadFile(inRoot); err == nil {
			defer os.WriteFile(inRoot, was, 0o644)
		}
		os.Remove(inRoot) // a symlink would point out of the root
		os.WriteFile(inRoot, resolv, 0o644)
	}
	for _, args := range [][]string{
		{"apt-get", "update", "-q"},
		append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, pkgs...),
		{"apt-get", "clean"},
	} {
		cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("qemu image: chroot %s: %v\n%s", strings.Join(args, " "), err, tail(out.String(), 15))
		}
	}
	os.RemoveAll(filepath.Join(root, "var", "lib", "apt", "lists"))
	return os.MkdirAll(filepath.Join(root, "var", "lib", "apt", "lists", "partial"), 0o755)
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// BuildImage builds (or takes from the cache) the Debian image of q (its
// suite, mirror, disk size and cache; defaults for what is unset): the
// image bare-metal nodes install from too.
func BuildImage(ctx context.Context, q Settings, log io.Writer) (Image, error) {
	q.applyDefaults()
	return (&Provider{q: &q}).Image(ctx, log)
}

// SeedFiles are the files that make a copy of the image a given host: its
// name, its network (a static address on the interface with its MAC), the
// deploy key, the phone-home script and this provisioning's enrollment
// token. Paths are relative to the root; 0600 for the secret ones.
func SeedFiles(s provider.Spec, mac, addr string, bits int, gateway string) map[string]string {
	files := map[string]string{
		"etc/hostname": s.Name + "\n",
		// IPv4 alone: with IPv6 link-local and router solicitations on,
		// systemd-networkd-wait-online waited 12 s more for routers that
		// the env bridge never has.
		"etc/systemd/network/10-booted.network": fmt.Sprintf("[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s/%d\nGateway=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
			mac, addr, bits, gateway),
		"root/.ssh/authorized_keys": string(s.AuthorizedKey),
		"etc/booted/phone-home.sh":  string(s.PhoneHome),
	}
	if s.Token != "" {
		files["etc/booted/enroll-token"] = s.Token
	}
	return files
}
