// Package osimage makes the operating system images bare-metal nodes are
// installed from: the Debian image booted builds (the qemu provider's) made
// into a bootable disk image with a small installer, and images imported
// from installer ISOs (copycds).
package osimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"booted/internal/bridge"
)

// Needs are the commands that make a disk image and its installer, and
// their Debian packages.
var Needs = map[string]string{
	"qemu-img": "qemu-utils", "resize2fs": "e2fsprogs", "debugfs": "e2fsprogs", "sfdisk": "fdisk",
	"syslinux": "syslinux", "mcopy": "mtools", "mkfs.vfat": "dosfstools", "busybox": "busybox-static", "cpio": "cpio",
	mbr: "syslinux-common", "sh": "dash",
}

// mbr is the boot code syslinux-common ships for the disk's first sector.
const mbr = "/usr/lib/syslinux/mbr/mbr.bin"

// Metal is an image a node installs itself from: a whole disk (a FAT boot
// partition with syslinux, the kernel and its initrd; the root filesystem)
// written raw by the installer, the installer's kernel and initrd.
type Metal struct {
	Dir       string
	Disk      string // disk.img
	Kernel    string // vmlinuz
	Installer string // installer.img (busybox, virtio modules, /init)
}

// metalVersion changes whenever the layout or the installer change.
const metalVersion = "3"

// FromQemu makes (once; cached next to the base image, under its lock)
// the metal form of a base image the qemu provider built: base is its
// qcow2 disk, kernel and initrd its boot files.
func FromQemu(ctx context.Context, imageDir, base, kernel, initrd string, log io.Writer) (Metal, error) {
	dir := filepath.Join(imageDir, "metal-"+metalVersion)
	m := Metal{Dir: dir, Disk: filepath.Join(dir, "disk.img"), Kernel: filepath.Join(dir, "vmlinuz"), Installer: filepath.Join(dir, "installer.img")}
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return m, nil
	}
	if _, err := os.Stat(mbr); err != nil {
		return m, fmt.Errorf("making the bare-metal disk image needs syslinux's boot code (%s): apt-get install syslinux-common", mbr)
	}
	unlock, err := bridge.LockFile(dir + ".lock")
	if err != nil {
		return m, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return m, nil // another process made it meanwhile
	}
	start := time.Now()
	fmt.Fprintf(log, "bare-metal image: making a bootable disk and its installer from %s\n", base)
	work := dir + ".build"
	os.RemoveAll(work)
	defer os.RemoveAll(work)
	if err := os.MkdirAll(filepath.Join(work, "out"), 0o755); err != nil {
		return m, err
	}
	run := func(stdin []byte, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = work
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("bare-metal image: %s %s: %v: %s", name, strings.Join(args, " "), err, tailLines(string(out), 5))
		}
		return nil
	}
	root := filepath.Join(work, "root.raw")
	// The root filesystem, as small as it can be.
	if err := run(nil, "qemu-img", "convert", "-O", "raw", base, root); err != nil {
		return m, err
	}
	run(nil, "e2fsck", "-fy", root) // exit status 1: fixed; the resize checks again
	if err := run(nil, "resize2fs", "-M", root); err != nil {
		return m, err
	}
	st, err := os.Stat(root)
	if err != nil {
		return m, err
	}
	const sector = 512
	bootStart, bootSectors := int64(2048), int64(64<<20/sector)
	rootStart, rootSectors := bootStart+bootSectors, (st.Size()+sector-1)/sector
	disk := filepath.Join(work, "out", "disk.img")
	if err := os.Truncate(disk, 0); err != nil && !os.IsNotExist(err) {
		return m, err
	}
	f, err := os.Create(disk)
	if err != nil {
		return m, err
	}
	f.Truncate((rootStart + rootSectors + 2048) * sector)
	f.Close()
	table := fmt.Sprintf("label: dos\n%d,%d,c,*\n%d,%d,83\n", bootStart, bootSectors, rootStart, rootSectors)
	if err := run([]byte(table), "sfdisk", "-q", disk); err != nil {
		return m, err
	}
	if err := run(nil, "dd", "if="+mbr, "of="+disk, "bs=440", "count=1", "conv=notrunc"); err != nil {
		return m, err
	}
	if err := run(nil, "mkfs.vfat", "-F", "16", "-n", "BOOTEDBOOT", "--offset", fmt.Sprint(bootStart), disk, fmt.Sprint(bootSectors/2)); err != nil {
		return m, err
	}
	cfg := filepath.Join(work, "syslinux.cfg")
	os.WriteFile(cfg, []byte("DEFAULT booted\nPROMPT 0\nTIMEOUT 1\nSERIAL 0 115200\nLABEL booted\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND root=LABEL=bootedroot rw console=ttyS0 net.ifnames=0\n"), 0o644)
	at := fmt.Sprintf("%s@@%d", disk, bootStart*sector)
	if err := run(nil, "mcopy", "-i", at, kernel, initrd, cfg, "::/"); err != nil {
		return m, err
	}
	if err := run(nil, "syslinux", "--install", "--offset", fmt.Sprint(bootStart*sector), disk); err != nil {
		return m, err
	}
	if err := run(nil, "dd", "if="+root, "of="+disk, "bs=1M", fmt.Sprintf("seek=%d", rootStart*sector>>20), "conv=notrunc,sparse"); err != nil {
		return m, err
	}
	if st, err := os.Stat(disk); err != nil {
		return m, err
	} else if err := os.WriteFile(disk+".size", []byte(fmt.Sprintln(st.Size())), 0o644); err != nil {
		return m, err
	}
	if err := buildInstaller(ctx, work, root, filepath.Join(work, "out", "installer.img"), run); err != nil {
		return m, err
	}
	if err := run(nil, "cp", kernel, filepath.Join(work, "out", "vmlinuz")); err != nil {
		return m, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(filepath.Join(work, "out"), dir); err != nil {
		return m, err
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return m, err
	}
	fmt.Fprintf(log, "bare-metal image: done in %v\n", time.Since(start).Round(time.Second))
	return m, nil
}

// installerModules are the kernel modules the installer loads, in order:
// a virtio NIC and disk (the cloud kernel has them as modules).
var installerModules = []string{"virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net", "virtio_blk"}

// buildInstaller makes the installer's initrd: busybox, the modules from
// the root filesystem, and /init.
func buildInstaller(ctx context.Context, work, root, out string, run func([]byte, string, ...string) error) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("bare-metal installer: needs busybox: apt-get install busybox-static")
	}
	ird := filepath.Join(work, "initrd")
	for _, d := range []string{"bin", "lib/modules", "proc", "sys", "dev", "mnt", "tmp"} {
		os.MkdirAll(filepath.Join(ird, d), 0o755)
	}
	if err := run(nil, "cp", busybox, filepath.Join(ird, "bin", "busybox")); err != nil {
		return err
	}
	mods := filepath.Join(work, "modules")
	os.MkdirAll(mods, 0o755)
	if err := run(nil, "debugfs", "-R", "rdump /lib/modules "+mods, root); err != nil {
		return err
	}
	vers, _ := os.ReadDir(filepath.Join(mods, "modules"))
	if len(vers) != 1 {
		return fmt.Errorf("bare-metal installer: %d kernels in the image, want 1", len(vers))
	}
	base := filepath.Join(mods, "modules", vers[0].Name())
	dep, err := os.ReadFile(filepath.Join(base, "modules.dep"))
	if err != nil {
		return err
	}
	for _, m := range installerModules {
		var path string
		for _, l := range strings.Split(string(dep), "\n") {
			p, _, _ := strings.Cut(l, ":")
			if strings.HasSuffix(p, "/"+m+".ko") {
				path = p
			}
		}
		if path == "" {
			continue // built in
		}
		if err := run(nil, "cp", filepath.Join(base, path), filepath.Join(ird, "lib", "modules", m+".ko")); err != nil {
			return err
		}
	}
	os.WriteFile(filepath.Join(ird, "init"), []byte(installerInit), 0o755)
	os.WriteFile(filepath.Join(ird, "bin", "udhcpc.script"), []byte(udhcpcScript), 0o755)
	cmd := exec.CommandContext(ctx, "sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1 > "+out)
	cmd.Dir = ird
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bare-metal installer: cpio: %v: %s", err, b)
	}
	return nil
}

// installerInit is the installer: it takes a lease, fetches its node's
// seed (only that node's address may), writes the disk image, puts the
// seed into the root filesystem, reports "installed" (booted then makes
// the node boot its disk from now on) and reboots. A step that fails is
// reported to /booted/failed.
const installerInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec >/dev/console 2>&1
for m in ` + "virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk" + `; do
	[ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
for w in $(cat /proc/cmdline); do
	case $w in
	booted.url=*) url=${w#booted.url=} ;;
	booted.name=*) name=${w#booted.name=} ;;
	booted.image=*) image=${w#booted.image=} ;;
	booted.disk=*) disk=${w#booted.disk=} ;;
	esac
done
disk=${disk:-/dev/vda}
say() { echo "booted-installer: $*"; }
token=
report() { # report KIND [WHY]: /booted/installed or /booted/failed
	why=$(echo "$2" | tr ' ' '+')
	wget -q -O /dev/null "$url/booted/$1?name=$name&token=$token&log=$why"
}
fail() { say "FAILED: $*"; [ -n "$token" ] && report failed "$name: $*"; sleep 10; poweroff -f; }
sleep 1
ip link set lo up
ip link set eth0 up
i=0
until udhcpc -i eth0 -s /bin/udhcpc.script -q -n -t 5; do
	i=$((i + 1)); [ $i -lt 5 ] || fail "no DHCP lease"
done
say "$name: lease taken; fetching its seed"
wget -q -O /tmp/seed.tar "$url/metal/seed/$name.tar" || fail "could not fetch the seed"
mkdir -p /tmp/seed && tar -x -C /tmp/seed -f /tmp/seed.tar || fail "unreadable seed"
token=$(cat /tmp/seed/etc/booted/enroll-token 2>/dev/null)
say "$name: writing $image to $disk"
# The image, checked whole: a transfer cut short (a busy machine, a
# dropped connection) is fetched again, not written half and found unmountable.
size=$(wget -q -O - "$url/metal/images/$image/disk.img.size") || fail "could not fetch the image's size"
want="$((size / 1048576))+$(( size % 1048576 > 0 )) records in"
set -o pipefail
try=1
until wget -q -O - "$url/metal/images/$image/disk.img" | dd of=$disk bs=1M iflag=fullblock 2>/tmp/dd.log && grep -qx "$want" /tmp/dd.log; do
	[ $try -lt 3 ] || fail "writing the disk: the image came short 3 times (dd: $(head -1 /tmp/dd.log), want $want)"
	say "$name: the image came short (dd: $(head -1 /tmp/dd.log), want $want); fetching it again"
	try=$((try + 1))
done
set +o pipefail
sync
blockdev --rereadpt $disk || partprobe $disk
i=0 # the partition's device appears a moment later (later still on a busy machine)
until [ -b ${disk}2 ] && mount -t ext4 ${disk}2 /mnt 2>/tmp/mount.log; do
	i=$((i + 1)); [ $i -lt 30 ] || fail "cannot mount the root filesystem: $(tail -1 /tmp/mount.log)"
	sleep 1
	[ -b ${disk}2 ] || blockdev --rereadpt $disk
done
cp -a /tmp/seed/. /mnt/ || fail "cannot write the seed"
umount /mnt
sync
say "$name: installed; telling booted"
report installed ""
i=0
until wget -q -O - "$url/metal/node/$(cat /sys/class/net/eth0/address | tr : -).ipxe" | grep -q sanboot; do
	i=$((i + 1)); [ $i -lt 60 ] || break
	sleep 1
done
say "$name: rebooting into its disk"
reboot -f
`

const udhcpcScript = `#!/bin/sh
case $1 in
bound|renew)
	ifconfig $interface $ip netmask ${subnet:-255.255.255.0} up
	;;
esac
`

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
