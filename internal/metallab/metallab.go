// Package metallab emulates bare-metal machines on this machine, for tests
// and for trying booted's bare-metal provider without hardware: each node
// of an env file becomes a qemu machine (TCG; KVM does not work everywhere)
// with an empty disk, its NIC (the node's MAC) on the network's bridge,
// netbooting through qemu's iPXE ROM, and an ipmi_sim BMC on 127.0.0.1 at
// the node's BMC port whose chassis control powers that machine on and off
// and picks its boot device. A node on a site's network is made in the
// site's namespace (its router's): its NIC on the site's bridge, its BMC
// on the site's 127.0.0.1, reached by the site's conductors. Everything it
// starts it records by pid, and Down stops by pid.
package metallab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"booted/internal/bridge"
	"booted/internal/config"
	"booted/internal/pidfile"
	"booted/internal/provider/baremetal"
	"booted/internal/provider/qemu"
	"booted/internal/shell"
)

// Needs are the commands the lab runs, and their Debian packages.
var Needs = map[string]string{"ipmi_sim": "openipmi", "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "ip": "iproute2", "nft": "nftables"}

// Machine is one emulated node.
type Machine struct {
	Name string
	MAC  string
	// IP is the address its NIC gets (from the env file; its port passes
	// that address alone, as a switch's port security would).
	IP string
	// BMCPort is the port its BMC listens on, on 127.0.0.1.
	BMCPort int
	// User and Password log in to its BMC.
	User, Password string
	DiskGB         int
	MemoryMB       int
	// Bridge is the bridge its NIC joins ("": the lab's); Netns the
	// network namespace that bridge and its BMC are in (a site's, whose
	// router alone reaches them; "": this machine's).
	Bridge, Netns string
}

// Lab is the emulated machines of one environment.
type Lab struct {
	// Env names the environment (in process names and tap devices).
	Env string
	// Dir holds one directory per machine (inventory/ENV/lab).
	Dir string
	// Bridge is the network's bridge the machines' NICs join.
	Bridge string
	// Console returns the file a machine's serial console goes to.
	Console func(name string) string
}

func (l *Lab) dir(name string) string { return filepath.Join(l.Dir, name) }

func (l *Lab) tap(name string) string { return bridge.ShortName("bm", l.Env, name) }

// Up makes machine m (its disk, its BMC's configuration and chassis
// control) and starts its BMC; the machine itself stays off until the BMC
// powers it on.
func (l *Lab) Up(ctx context.Context, m Machine) error {
	d := l.dir(m.Name)
	if err := os.MkdirAll(filepath.Join(d, "state"), 0o700); err != nil {
		return err
	}
	os.Chmod(d, 0o700)
	disk := filepath.Join(d, "disk.qcow2")
	if _, err := os.Stat(disk); err != nil {
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-f", "qcow2", disk, fmt.Sprintf("%dG", max(m.DiskGB, 1))).CombinedOutput(); err != nil {
			return fmt.Errorf("lab %s: disk: %v: %s", m.Name, err, out)
		}
	}
	br := m.Bridge
	if br == "" {
		br = l.Bridge
	}
	if m.Netns != "" && bridge.NetnsInode(m.Netns) == 0 {
		return fmt.Errorf("lab %s: its network's namespace %s is not made: start the environment's controller first (nginx:restart %s)", m.Name, m.Netns, l.Env)
	}
	if err := os.WriteFile(filepath.Join(d, "netns"), []byte(m.Netns), 0o600); err != nil {
		return err
	}
	// Its port passes its own MAC and address alone (bridge.Guard), as a
	// switch's port security would: a tenant of one node cannot take
	// another's address or answer for the gateway.
	if ip, err := netip.ParseAddr(m.IP); err == nil {
		if err := bridge.Guard(ctx, m.Netns, l.Env, l.tap(m.Name), m.MAC, ip); err != nil {
			return fmt.Errorf("lab %s: %w", m.Name, err)
		}
	}
	data := map[string]any{"M": m, "Dir": d, "Tap": l.tap(m.Name), "Bridge": br, "Console": l.Console(m.Name), "Confined": strings.Join(qemu.Confined, " "),
		"Name": "booted-lab-" + l.Env + "-" + m.Name, "Memory": max(m.MemoryMB, 512)}
	for file, t := range map[string]*template.Template{"chassis": chassisTmpl, "lan.conf": lanTmpl} {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if file == "chassis" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(d, file), b.Bytes(), mode); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d, "bmc.emu"), []byte(emu), 0o600); err != nil {
		return err
	}
	// SeaBIOS copies the screen (its own, iPXE's) to the serial port at
	// this I/O address (0x3f8, little-endian): the console shows PXE too.
	if err := os.WriteFile(filepath.Join(d, "sercon-port"), []byte{0xf8, 0x03}, 0o600); err != nil {
		return err
	}
	if pidfile.Read(filepath.Join(d, "ipmi_sim.pid"), d) != 0 {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(d, "ipmi_sim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	// In a site's namespace: it, and the machines its chassis control
	// starts, are on the site's network.
	cmd := bridge.CommandIn(context.Background(), m.Netns, "ipmi_sim", "-c", filepath.Join(d, "lan.conf"), "-f", filepath.Join(d, "bmc.emu"), "-s", filepath.Join(d, "state"), "-n")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab %s: ipmi_sim: %w", m.Name, err)
	}
	os.WriteFile(filepath.Join(d, "ipmi_sim.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	go cmd.Wait() // reaped when it exits; it outlives this process otherwise
	// ready when it answers on its port
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(readFile(filepath.Join(d, "ipmi_sim.log")), "failed") {
			break
		}
		if listening(cmd.Process.Pid, m.BMCPort) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("lab %s: ipmi_sim does not listen on 127.0.0.1:%d: %s", m.Name, m.BMCPort, tail(readFile(filepath.Join(d, "ipmi_sim.log"))))
}

// Down powers machine name off and stops its BMC (by their pids) and
// removes its tap; with purge its disk and files go too.
func (l *Lab) Down(ctx context.Context, name string, purge bool) error {
	d := l.dir(name)
	err := errors.Join(pidfile.Stop(ctx, filepath.Join(d, "qemu.pid"), d, syscall.SIGTERM, 3*time.Second),
		pidfile.Stop(ctx, filepath.Join(d, "ipmi_sim.pid"), d, syscall.SIGTERM, 3*time.Second))
	if ns := readFile(filepath.Join(d, "netns")); ns != "" {
		exec.CommandContext(ctx, "ip", "-n", ns, "link", "del", l.tap(name)).Run() // (gone with the namespace, if it is)
		if bridge.NetnsInode(ns) != 0 {
			err = errors.Join(err, bridge.Unguard(ctx, ns, l.Env, l.tap(name)))
		}
	} else {
		bridge.Remove(ctx, l.tap(name))
		err = errors.Join(err, bridge.Unguard(ctx, "", l.Env, l.tap(name)))
	}
	if purge {
		err = errors.Join(err, os.RemoveAll(d))
	}
	return err
}

// Machines lists the machines made so far.
func (l *Lab) Machines() []string {
	ents, _ := os.ReadDir(l.Dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Running reports whether machine name's VM and BMC run.
func (l *Lab) Running(name string) (vm, bmc bool) {
	d := l.dir(name)
	return pidfile.Read(filepath.Join(d, "qemu.pid"), d) != 0, pidfile.Read(filepath.Join(d, "ipmi_sim.pid"), d) != 0
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

func tail(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > 3 {
		l = l[len(l)-3:]
	}
	return strings.Join(l, " | ")
}

func listening(pid, port int) bool {
	// ipmi_sim listens on UDP: look it up in its network's /proc/net/udp
	// (hex port).
	return strings.Contains(readFile(fmt.Sprintf("/proc/%d/net/udp", pid)), fmt.Sprintf(":%04X ", port))
}

var funcs = template.FuncMap{"q": shell.Quote}

// chassisTmpl is the machine's chassis control, as ipmi_sim runs it:
// "chassis DEVICE get PARM..." prints PARM:VALUE lines, "chassis DEVICE set
// PARM VALUE..." changes them (power 1/0, reset 1, boot pxe/default/none).
var chassisTmpl = template.Must(template.New("chassis").Funcs(funcs).Parse(`#!/bin/sh
# Chassis control of emulated machine {{.M.Name}}, written by booted: its
# ipmi_sim runs it to power the machine (a qemu VM) and pick its boot device.
dir={{q .Dir}}
pidf="$dir/qemu.pid"
bootf="$dir/bootdev"
alive() {
	p=$(cat "$pidf" 2>/dev/null) || return 1
	[ -n "$p" ] && [ -r /proc/$p/cmdline ] && grep -q qemu /proc/$p/cmdline && ! grep -q '^State:.*Z' /proc/$p/status
}
start() {
	order=nc
	[ "$(cat "$bootf" 2>/dev/null)" = default ] && order=c
	ip link show {{.Tap}} >/dev/null 2>&1 || { ip tuntap add {{.Tap}} mode tap && ip link set {{.Tap}} master {{.Bridge}} up; }
	qemu-system-x86_64 -name {{.Name}} -machine pc -accel tcg -cpu qemu64 -m {{.Memory}} -smp 1 \
		-display none -vga none -serial file:{{q .Console}} -fw_cfg name=etc/sercon-port,file="$dir/sercon-port" \
		{{.Confined}} \
		-drive file="$dir/disk.qcow2",if=virtio,format=qcow2 \
		-netdev tap,id=n0,ifname={{.Tap}},script=no,downscript=no -device virtio-net-pci,netdev=n0,mac={{.M.MAC}} \
		-boot order=$order -daemonize -pidfile "$pidf" >>"$dir/qemu.log" 2>&1
}
stop() {
	alive || return 0
	p=$(cat "$pidf")
	kill -TERM "$p"
	i=0
	while alive && [ $i -lt 60 ]; do sleep 0.05; i=$((i + 1)); done
	alive && kill -KILL "$p"
	rm -f "$pidf"
}
shift
op=$1
shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) if alive; then echo power:1; else echo power:0; fi ;;
		boot) echo "boot:$(cat "$bootf" 2>/dev/null || echo pxe)" ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done
	;;
set)
	while [ $# -gt 0 ]; do
		p=$1 v=$2
		shift 2
		case $p in
		power) if [ "$v" = 1 ]; then alive || start; else stop; fi ;;
		reset) stop; start ;;
		boot) echo "$v" > "$bootf" ;;
		identify) shift ;;
		shutdown) stop ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done
	;;
*) exit 1 ;;
esac
`))

var lanTmpl = template.Must(template.New("lan").Funcs(funcs).Parse(`# BMC of emulated machine {{.M.Name}}, written by booted.
name "{{.M.Name}}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {{.M.BMCPort}}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{{.Dir}}/chassis 0x20"
  user 2 true "{{.M.User}}" "{{.M.Password}}" admin 10 none md2 md5 straight
`))

// emu is the BMC's management controller, as little as ipmi_sim needs.
const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// Env is the lab of a bare-metal environment: one machine per node of its
// env file, on its networks' bridges.
type Env struct {
	Lab      *Lab
	Machines []Machine
	// Bridges are the networks' bridges (name → address/length) the
	// machines join; Up makes them.
	Bridges map[string]netip.Prefix
	// PasswordFile returns where a node's BMC password is kept.
	PasswordFile func(name string) string
}

// ForEnv returns the lab of env (a baremetal env file), under dir
// (inventory/ENV).
func ForEnv(env *config.Env, dir string) (*Env, error) {
	set, ok := env.Provider.Settings.(*baremetal.Settings)
	if !ok {
		return nil, fmt.Errorf("%s: metal:lab emulates the nodes of a baremetal environment; this one's provider is %s", env.Path, env.Provider.Type)
	}
	e := &Env{Bridges: map[string]netip.Prefix{}}
	bridgeOf, netnsOf := map[string]string{}, map[string]string{}
	for _, nw := range set.Networks {
		bridgeOf[nw.Name] = nw.Bridge
		if nw.Site != "" { // the site's bridge, made with its network
			netnsOf[nw.Name] = bridge.SiteNetns(env.Name, nw.Site)
			continue
		}
		p, _ := netip.ParsePrefix(nw.Subnet)
		p = p.Masked()
		e.Bridges[nw.Bridge] = netip.PrefixFrom(p.Addr().Next(), p.Bits())
	}
	var br string
	for _, n := range set.Nodes {
		nic := n.Primary()
		br = bridgeOf[nic.Network]
		e.Machines = append(e.Machines, Machine{Name: n.Name, MAC: strings.ToLower(nic.MAC), IP: nic.IP, BMCPort: n.BMC.Port, User: n.BMC.User, DiskGB: n.DiskGB, MemoryMB: n.MemoryMB,
			Bridge: bridgeOf[nic.Network], Netns: netnsOf[nic.Network]})
	}
	e.Lab = &Lab{Env: env.Name, Dir: filepath.Join(dir, "lab"), Bridge: br,
		Console: func(name string) string { return filepath.Join(dir, "console", name+".log") }}
	e.PasswordFile = func(name string) string {
		for _, n := range set.Nodes {
			if n.Name == name && n.BMC.PasswordFile != "" {
				return n.BMC.PasswordFile
			}
		}
		return filepath.Join(dir, "bmc", name)
	}
	return e, nil
}

// Up makes the bridges and every machine with its BMC; a BMC password that
// does not exist yet is made (random) and kept where booted reads it.
func (e *Env) Up(ctx context.Context) error {
	for br, gw := range e.Bridges {
		if err := bridge.Ensure(ctx, br, gw, "provider.baremetal.networks"); err != nil {
			return err
		}
	}
	os.MkdirAll(filepath.Dir(e.Lab.Console("x")), 0o700)
	for _, m := range e.Machines {
		pw, err := password(e.PasswordFile(m.Name))
		if err != nil {
			return fmt.Errorf("lab %s: BMC password: %w", m.Name, err)
		}
		m.Password = pw
		if err := e.Lab.Up(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// Down stops every machine and BMC and removes them.
func (e *Env) Down(ctx context.Context) error {
	var errs []error
	for _, name := range e.Lab.Machines() {
		errs = append(errs, e.Lab.Down(ctx, name, true))
	}
	return errors.Join(errs...)
}

// password reads the password at path, making a random one there (0600)
// if there is none.
func password(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	const letters = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	raw := make([]byte, 16) // ipmi_sim takes at most 16 (IPMI 1.5 length)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	for i := range raw {
		raw[i] = letters[int(raw[i])%len(letters)]
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return string(raw), os.WriteFile(path, raw, 0o600)
}
