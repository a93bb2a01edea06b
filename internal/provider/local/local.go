package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"booted/internal/atomicfile"
	"booted/internal/bridge"
	"booted/internal/config"
	"booted/internal/pkgs"
	"booted/internal/provider"
	"booted/internal/provider/hostrec"
	"booted/internal/shell"
)

// Provider makes local hosts for one environment.
type Provider struct {
	env string
	lan // the environment's bridge
	// sites are the bridges of the sites with a subnet of their own
	// (sites.X.subnet), by site; siteOf says a host's site.
	sites   map[string]lan
	siteOf  func(host, role string) string
	dir     string
	sshPort int
}

// lan is a bridge local hosts are on: the environment's, on this machine,
// or a site's, in its namespace (see net.go).
type lan struct {
	bridge  string
	subnet  netip.Prefix
	gateway netip.Prefix // the bridge's address
	// A site's: its name, namespace, and its uplink's end on this machine.
	site, ns, uplink string
}

// Interface guards: what local hosts can do.
var (
	_ provider.Provider   = (*Provider)(nil)
	_ provider.Power      = (*Provider)(nil)
	_ provider.Deleter    = (*Provider)(nil)
	_ provider.Console    = (*Provider)(nil)
	_ provider.Preparer   = (*Provider)(nil)
	_ provider.Teardowner = (*Provider)(nil)
)

// Needs are the commands local hosts run, and their Debian packages.
var Needs = pkgs.Need{
	"/usr/sbin/sshd": "openssh-server", "ssh-keygen": "openssh-client", "ip": "iproute2", "/bin/sh": "dash",
	"unshare": "util-linux", "setsid": "util-linux", "curl": "curl", "tini": "tini",
	"setpriv": "util-linux", "pivot_root": "util-linux", "mount": "mount", "awk": "mawk", "chown": "coreutils", "nsenter": "util-linux", // the host's sandbox
	"nft": "nftables", // the routing between sites' bridges, the ports' security
}

// Open returns the local provider of env, installing what it needs; the
// hosts' files go under o.Dir/hosts.
func Open(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
	if o.Install != nil {
		if err := o.Install(ctx, Needs); err != nil {
			return nil, err
		}
	}
	return New(env, filepath.Join(o.Dir, "hosts"))
}

// New returns the local provider of env, keeping host state under
// hostsDir (inventory/ENV/hosts).
func New(env *config.Env, hostsDir string) (*Provider, error) {
	set, ok := env.Provider.Settings.(*Settings)
	if !ok {
		return nil, fmt.Errorf("%s: provider.local is missing", env.Path)
	}
	gw, err := set.Gateway()
	if err != nil {
		return nil, fmt.Errorf("%s: provider.local.subnet: %w", env.Path, err)
	}
	abs, err := filepath.Abs(hostsDir)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		env: env.Name, lan: lan{subnet: gw.Masked(), gateway: gw, bridge: bridge.Name(env.Name)}, dir: abs,
		sshPort: env.SSH.Port, sites: map[string]lan{}, siteOf: env.SiteOf,
	}
	for name, st := range env.Sites {
		if st == nil || st.Subnet == "" {
			continue
		}
		sgw, err := config.GatewayOf(st.Subnet)
		if err != nil {
			return nil, fmt.Errorf("%s: sites.%s.subnet: %w", env.Path, name, err)
		}
		if sgw.Masked().Overlaps(p.subnet) {
			return nil, fmt.Errorf("%s: sites.%s.subnet %s overlaps provider.local.subnet %s: a site's bridge needs a subnet of its own", env.Path, name, st.Subnet, set.Subnet)
		}
		p.sites[name] = lan{bridge: bridge.SiteBridge(env.Name, name), subnet: sgw.Masked(), gateway: sgw,
			site: name, ns: bridge.SiteNetns(env.Name, name), uplink: bridge.ShortName("bu", env.Name, name)}
	}
	return p, nil
}

// Bridge returns the name of the environment's bridge.
func (p *Provider) Bridge() string { return p.bridge }

// HostLinks returns the links of this machine the environment's hosts'
// traffic comes in on: its bridge, and its sites' uplinks.
func (p *Provider) HostLinks() []string {
	out := []string{p.bridge}
	for _, l := range p.lans()[1:] {
		out = append(out, l.uplink)
	}
	return out
}

// lans are the environment's bridge and its sites', sites in name order.
func (p *Provider) lans() []lan {
	out := []lan{p.lan}
	names := make([]string, 0, len(p.sites))
	for n := range p.sites {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, p.sites[n])
	}
	return out
}

// lanFor is the bridge a new host of role goes on: its site's, if that
// has a subnet of its own, else the environment's.
func (p *Provider) lanFor(name, role string) lan {
	if l, ok := p.sites[p.siteOf(name, role)]; ok {
		return l
	}
	return p.lan
}

// lanOf is the bridge host r is on (the environment's for a host made
// before it had sites).
func (p *Provider) lanOf(r record) lan {
	if r.Bridge == "" || r.Gateway == "" {
		return p.lan
	}
	for _, l := range p.sites {
		if l.bridge == r.Bridge && l.ns == r.BridgeNetns {
			return l
		}
	}
	gw, err := netip.ParsePrefix(r.Gateway) // a site no longer in the env file
	if err != nil {
		return p.lan
	}
	return lan{bridge: r.Bridge, subnet: gw.Masked(), gateway: gw, ns: r.BridgeNetns}
}

// record is what Build remembers of a host, in hosts/NAME/host.json.
type record struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	MAC   string `json:"mac"`
	Netns string `json:"netns"`
	Veth  string `json:"veth"`
	// Bridge and Gateway (ADDRESS/BITS) are the bridge the host is on
	// and its address there, BridgeNetns the namespace it is in (a
	// site's); empty: the environment's.
	Bridge      string `json:"bridge,omitempty"`
	Gateway     string `json:"gateway,omitempty"`
	BridgeNetns string `json:"bridge_netns,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (p *Provider) hostDir(name string) string { return filepath.Join(p.dir, name) }

func (p *Provider) load(name string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(p.hostDir(name), "host.json"))
	if errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("host %s: %w", name, provider.ErrNoInstance)
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("host %s: %s: %w", name, filepath.Join(p.hostDir(name), "host.json"), err)
	}
	return r, nil
}

// allocate gives name (of role) a record with a free address on its
// bridge, under the env's lock.
func (p *Provider) allocate(name, role string) (record, error) {
	l := p.lanFor(name, role)
	return hostrec.Allocate(p.dir, name, l.subnet, p.load, func(r record) string { return r.Addr }, func(a netip.Addr) (record, error) {
		return p.create(name, a, l)
	})
}

// create records a new host with address a on l and makes its directories.
func (p *Provider) create(name string, a netip.Addr, l lan) (record, error) {
	r := record{
		Name:  name,
		Addr:  a.String(),
		MAC:   bridge.MAC("02:b0", p.env+"/"+name),
		Netns: "booted-" + p.env + "-" + name,
		Veth:  bridge.ShortName("bv", p.env, name),
	}
	if l.bridge != p.bridge {
		r.Bridge, r.Gateway, r.BridgeNetns = l.bridge, l.gateway.String(), l.ns
	}
	dir := p.hostDir(name)
	for _, d := range []string{"root/.ssh", "opt", "etc-booted", "etc-ssh", "var-log", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "fs", d), 0o755); err != nil {
			return r, err
		}
	}
	for d, mode := range map[string]os.FileMode{"": 0o700, "fs/root": 0o700, "fs/root/.ssh": 0o700, "fs/tmp": 0o1777} {
		if err := os.Chmod(filepath.Join(dir, d), mode); err != nil {
			return r, err
		}
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, "host.json"), b, 0o600); err != nil {
		return r, err
	}
	return r, nil
}

// Build makes the host's files and network (namespace, veth, address)
// without booting it.
func (p *Provider) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	if !nameRE.MatchString(s.Name) {
		return provider.Instance{}, fmt.Errorf("host name %q: use lower-case letters, digits and '-'", s.Name)
	}
	for _, d := range []string{"/etc/booted", "/run/sshd"} { // mount point; sshd's privilege-separation dir
		if err := os.MkdirAll(d, 0o755); err != nil {
			return provider.Instance{}, err
		}
	}
	r, err := p.allocate(s.Name, s.Role)
	if err != nil {
		return provider.Instance{}, err
	}
	if err := p.writeFiles(r, s); err != nil {
		return provider.Instance{}, fmt.Errorf("host %s: %w", s.Name, err)
	}
	if err := p.ensureLan(ctx, p.lanOf(r)); err != nil {
		return provider.Instance{}, err
	}
	if err := p.ensureNetns(ctx, r); err != nil {
		return provider.Instance{}, fmt.Errorf("host %s: %w", s.Name, err)
	}
	return p.instance(r), nil
}

// writeFiles writes what booted gives the host into its own files, which
// the host may have changed: nothing is written through a link it made
// (atomicfile.WriteIn).
func (p *Provider) writeFiles(r record, s provider.Spec) error {
	dir := p.hostDir(r.Name)
	fs := filepath.Join(dir, "fs")
	uid := HostUID(p.env, r.Name) // its root's, which may be running: the file is its own at once
	if len(s.AuthorizedKey) > 0 {
		if err := atomicfile.WriteInAs(fs, "root/.ssh/authorized_keys", s.AuthorizedKey, 0o600, uid); err != nil {
			return err
		}
	}
	if len(s.PhoneHome) > 0 {
		if err := atomicfile.WriteInAs(fs, "etc-booted/phone-home.sh", s.PhoneHome, 0o700, uid); err != nil {
			return err
		}
	}
	if s.Token != "" { // this provisioning's enrollment token, for this host alone
		if err := atomicfile.WriteInAs(fs, "etc-booted/enroll-token", []byte(s.Token), 0o600, uid); err != nil {
			return err
		}
	}
	data := map[string]any{"Name": r.Name, "Env": p.env, "Addr": r.Addr, "Port": p.sshPort, "FS": fs, "Root": filepath.Join(dir, "root"),
		"Mounts": privateDirs, "Caps": "+" + strings.Join(Caps, ",+"), "UID": uid}
	var b bytes.Buffer
	if err := sshdConfig.Execute(&b, data); err != nil {
		return err
	}
	if err := atomicfile.WriteInAs(fs, "etc-ssh/sshd_config", b.Bytes(), 0o644, uid); err != nil {
		return err
	}
	b.Reset()
	if err := bootScript.Execute(&b, data); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "boot.sh"), b.Bytes(), 0o700)
}

func (p *Provider) ensureNetns(ctx context.Context, r record) error {
	l := p.lanOf(r)
	// Its port passes only its own MAC and address (bridge.Guard): a
	// host's root cannot take another's address or answer for the gateway.
	guard := func() error {
		addr, err := netip.ParseAddr(r.Addr)
		if err != nil {
			return fmt.Errorf("host %s: address %q: %w", r.Name, r.Addr, err)
		}
		if err := bridge.Guard(ctx, l.ns, p.env, r.Veth, r.MAC, addr); err != nil {
			return fmt.Errorf("host %s: %w", r.Name, err)
		}
		return nil
	}
	if bridge.NetnsInode(r.Netns) != 0 && linkIn(ctx, l.ns, r.Veth) {
		return guard()
	}
	if bridge.NetnsInode(r.Netns) != 0 { // half made: start again
		bridge.IP(ctx, "", "netns", "del", r.Netns)
	}
	if err := bridge.IP(ctx, "", "netns", "add", r.Netns); err != nil {
		return err
	}
	var in []string // the bridge's namespace: a site's, or this machine's
	if l.ns != "" {
		in = []string{"-n", l.ns}
	}
	err := bridge.IP(ctx, fmt.Sprintf("link add %s type veth peer name %sp netns %s\nlink set %s master %s up\n", r.Veth, r.Veth, r.Netns, r.Veth, l.bridge), in...)
	if err == nil {
		err = bridge.IP(ctx, fmt.Sprintf("link set %sp name eth0\nlink set eth0 address %s\naddr add %s/%d dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via %s\n",
			r.Veth, r.MAC, r.Addr, l.subnet.Bits(), l.gateway.Addr()), "-n", r.Netns)
	}
	if err == nil {
		err = guard()
	}
	if err != nil {
		bridge.IP(context.WithoutCancel(ctx), "", "netns", "del", r.Netns)
		return err
	}
	return nil
}

// Start boots the host: brings its link up, mounts its directories, sets
// its hostname, starts sshd and runs the phone-home script.
func (p *Provider) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	inst, err := p.Build(ctx, s)
	if err != nil {
		return inst, err
	}
	r, err := p.load(s.Name)
	if err != nil {
		return inst, err
	}
	if p.running(r) {
		return inst, nil
	}
	if err := bridge.IP(ctx, "", "-n", r.Netns, "link", "set", "eth0", "up"); err != nil {
		return inst, fmt.Errorf("host %s: %w", s.Name, err)
	}
	if err := p.boot(ctx, r); err != nil {
		killAll(context.WithoutCancel(ctx), bridge.NetnsInode(r.Netns), time.Second)
		return inst, fmt.Errorf("host %s: boot failed: %w", s.Name, err)
	}
	inst.State = provider.Running
	return inst, nil
}

// bootTimeout bounds boot.sh's setup (mounts, host key, sshd).
const bootTimeout = 30 * time.Second

// bootDone is the line boot.sh writes to its log when the host is up.
const bootDone = "boot.sh: done\n"

// boot runs boot.sh as PID 1 of the host's own PID namespace, in its own
// mount, UTS and IPC namespaces (its processes see only each other; /proc
// is its own): boot.sh makes the host's root and moves into it, says it is
// done in its log, then becomes tini, the host's init, which reaps orphans
// and lives as long as the host, with the host's capabilities alone.
func (p *Provider) boot(ctx context.Context, r record) error {
	dir := p.hostDir(r.Name)
	logPath := filepath.Join(dir, "boot.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "root"), 0o700); err != nil { // the new root's mount point
		return err
	}
	procs, err := bound(r.Netns, logf)
	if err != nil {
		logf.Close()
		return fmt.Errorf("host %s: %w", r.Name, err)
	}
	if len(procs) == 0 {
		fmt.Fprintf(logf, "boot: no cgroup to make under /sys/fs/cgroup: the host's memory, processes and CPU are not bounded\n")
	}
	// The boot joins the host's cgroups first (a shell here, where the
	// cgroup files are: ip netns exec mounts a /sys of its own), and
	// everything of the host descends from it.
	cmd := exec.Command("/bin/sh", "-ec", `for p in $BOOTED_CGROUPS; do echo $$ > "$p"; done; exec "$@"`, "boot",
		"ip", "netns", "exec", r.Netns,
		"unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc", "--propagation", "private",
		"/bin/sh", filepath.Join(dir, "boot.sh"))
	cmd.Env = append(os.Environ(), "BOOTED_CGROUPS="+strings.Join(procs, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // the host outlives this process
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	// unshare, in the host's network namespace, lives as long as the host:
	// its PID tells at once that the host runs (see running).
	if err := os.WriteFile(filepath.Join(dir, "init.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		cmd.Process.Kill()
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }() // reaped when the host stops
	deadline := time.NewTimer(bootTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, _ := os.ReadFile(logPath); bytes.HasSuffix(b, []byte(bootDone)) {
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "boot.log"))
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(b))
		case <-deadline.C:
			return fmt.Errorf("boot.sh not done within %v (%s)", bootTimeout, filepath.Join(dir, "boot.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Locate says the host's bridge and its veth there.
func (p *Provider) Locate(name string) (provider.Location, error) {
	r, err := p.load(name)
	if err != nil {
		return provider.Location{}, err
	}
	l := p.lanOf(r)
	return provider.Location{Bridge: l.bridge, Port: r.Veth, Network: l.subnet.String()}, nil
}

// running tells whether any process runs in the host's network namespace:
// the one boot started, if it still does (one read), else any (a walk of
// /proc, which grows with the machine's processes).
func (p *Provider) running(r record) bool {
	ino := bridge.NetnsInode(r.Netns)
	if ino == 0 {
		return false
	}
	if b, err := os.ReadFile(filepath.Join(p.hostDir(r.Name), "init.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && inNetns(pid, ino) {
			return true
		}
	}
	return len(pidsIn(ino)) > 0
}

// Stop kills every process of the host and takes its link down.
func (p *Provider) Stop(ctx context.Context, name string) error {
	r, err := p.load(name)
	if err != nil {
		return err
	}
	ino := bridge.NetnsInode(r.Netns)
	if ino == 0 {
		return nil
	}
	if err := killAll(ctx, ino, 3*time.Second); err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	removeCgroups(r.Netns)
	if err := bridge.IP(ctx, "", "-n", r.Netns, "link", "set", "eth0", "down"); err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	return nil
}

// Delete stops the host and removes its namespace, veth and files.
func (p *Provider) Delete(ctx context.Context, name string) error {
	r, err := p.load(name)
	if errors.Is(err, provider.ErrNoInstance) {
		return nil
	}
	if err != nil {
		return err
	}
	if ino := bridge.NetnsInode(r.Netns); ino != 0 {
		if err := killAll(ctx, ino, 3*time.Second); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
		if err := bridge.IP(ctx, "", "netns", "del", r.Netns); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
	}
	removeCgroups(r.Netns)   // (its namespace may have gone with its site's: its cgroup has not)
	if p.lanOf(r).ns == "" { // (in a site's namespace, it went with the host's)
		bridge.Remove(ctx, r.Veth)
	}
	if ns := p.lanOf(r).ns; ns == "" || bridge.NetnsInode(ns) != 0 { // (a site's namespace gone: its rules with it)
		if err := bridge.Unguard(ctx, ns, p.env, r.Veth); err != nil {
			return fmt.Errorf("host %s: %w", name, err)
		}
	}
	return os.RemoveAll(p.hostDir(name))
}

// List returns every host of the environment.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	recs, err := hostrec.Records(p.dir, p.load)
	var out []provider.Instance
	for _, r := range recs {
		out = append(out, p.instance(r))
	}
	return out, err
}

// ConsoleLog is the host's boot log: what its boot and phone-home printed.
func (p *Provider) ConsoleLog(name string) string {
	return filepath.Join(p.hostDir(name), "fs", "var-log", "booted-phone-home.log")
}

// Teardown deletes every host of the environment, its bridge and its
// sites' networks, and the routing between them.
func (p *Provider) Teardown(ctx context.Context) error {
	var sites []string
	for _, l := range p.lans()[1:] {
		sites = append(sites, l.ns)
	}
	recs, _ := hostrec.Records(p.dir, p.load) // a host's site no longer in the env file
	for _, r := range recs {
		if ns := p.lanOf(r).ns; ns != "" && !slices.Contains(sites, ns) {
			sites = append(sites, ns)
		}
	}
	errs := []error{provider.DeleteAll(ctx, p), unrouteSites(ctx, p.env)}
	for _, ns := range sites {
		errs = append(errs, removeSite(ctx, ns))
	}
	errs = append(errs, bridge.Remove(ctx, p.bridge), bridge.Unguarded(ctx, "", p.env))
	return errors.Join(errs...)
}

// linkIn reports whether link name exists in namespace ns ("": this
// process's).
func linkIn(ctx context.Context, ns, name string) bool {
	if ns == "" {
		return bridge.LinkExists(name)
	}
	return bridge.IP(ctx, "", "-n", ns, "link", "show", "dev", name) == nil
}

func (p *Provider) instance(r record) provider.Instance {
	st := provider.Off
	if p.running(r) {
		st = provider.Running
	}
	return provider.Instance{Name: r.Name, ID: r.Netns, Addr: r.Addr, MAC: r.MAC, State: st}
}

var funcs = template.FuncMap{"q": shell.Quote}

var sshdConfig = template.Must(template.New("sshd").Parse(`# sshd of local host {{.Name}} ({{.Env}}), written by booted: key-only login.
ListenAddress {{.Addr}}
Port {{.Port}}
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /etc/booted/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
PrintMotd no
MaxStartups 256
MaxSessions 64
Subsystem sftp internal-sftp
`))

var bootScript = template.Must(template.New("boot").Funcs(funcs).Parse(`#!/bin/sh
# Boot of local host {{.Name}} ({{.Env}}), written by booted. It runs as
# PID 1 of the host's own PID namespace, in its own network, mount, UTS and
# IPC namespaces. It makes the host's root (a tmpfs holding this machine's
# /usr and /etc read-only, the host's own directories, a minimal /dev, its
# own /proc with its kernel knobs read-only, /sys read-only), moves into it
# (nothing else of this machine is left in sight), and starts the host's
# processes in a user namespace of their own: root there is uid {{.UID}}
# here, unprivileged, its own files theirs; they keep a container's
# capabilities alone (no mounts, modules, device nodes, network
# administration, ptrace or raw I/O), and no way to gain more (setpriv
# --no-new-privs).
set -eu
fs={{q .FS}}
R={{q .Root}}
U={{.UID}}
# Its root is not root here: the host's network lets it bind any port
# (sshd's 22, a load balancer's 80) and ping.
echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start
echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range
mount --make-rprivate /
mount -t tmpfs -o mode=755,size=64m,nosuid,nodev,uid=$U,gid=$U booted-root "$R" # its root's (sshd's StrictModes checks /)
for d in usr etc proc sys dev run tmp var/log root opt .old; do mkdir -p "$R/$d"; done
for l in bin sbin lib lib64; do ln -s "usr/$l" "$R/$l"; done
ro() { mount --bind "$1" "$2" && mount -o remount,bind,ro,nosuid "$2"; }
ro /usr "$R/usr"
ro /etc "$R/etc"
# Its own shadow file: this machine's is not its root's to read (sshd, not
# able to read an account's entry, takes it as locked); every account of
# it locked for passwords, as logins are by key alone.
awk -F: '{ print $1 ":*:19000:0:99999:7:::" }' /etc/passwd > "$R/.shadow"
chown "$U:$U" "$R/.shadow" && chmod 600 "$R/.shadow"
mount --bind "$R/.shadow" "$R/etc/shadow"
for d in{{range .Mounts}} {{.}}{{end}}; do
	mount --bind "$fs/$(echo "$d" | tr / -)" "$R/$d"
done
mount -t tmpfs -o mode=755,size=1m,nosuid,noexec booted-dev "$R/dev"
for d in null zero full random urandom tty; do
	touch "$R/dev/$d" && mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev booted-shm "$R/dev/shm"
mount -t tmpfs -o mode=755,size=16m,nosuid,nodev,uid=$U,gid=$U booted-run "$R/run"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for d in sys bus fs irq sysrq-trigger; do [ ! -e "$R/proc/$d" ] || ro "$R/proc/$d" "$R/proc/$d"; done
for f in kcore keys timer_list; do [ ! -e "$R/proc/$f" ] || mount --bind /dev/null "$R/proc/$f"; done
ro /sys "$R/sys"
hostname {{.Name}}
cd "$R"
pivot_root . .old
umount -l /.old
rmdir /.old
cd /
mkdir -p /run/sshd
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -C root@{{.Name}} -f /etc/ssh/ssh_host_ed25519_key
# The host's own directories are its root's (links themselves, never
# what they point to).
chown -R -h -P "$U:$U" /root /opt /etc/booted /etc/ssh /var/log /tmp /run
chmod 1777 /tmp
# The host's init: sshd (listening when it returns), the phone-home
# script; then it says the boot is done on fd 3 (the boot log booted
# reads, which nothing of the host keeps open).
cat > /booted-init <<'INIT'
/usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log 3>&-
if [ -x /etc/booted/phone-home.sh ]; then # a child of init (reaped there), not of this script
	(setsid /etc/booted/phone-home.sh </dev/null >>/var/log/booted-phone-home.log 2>&1 3>&- &)
fi
echo "boot.sh: done" >&3
exec 3>&- sleep infinity
INIT
mkfifo -m 644 /booted-go
exec 3>&1 >>/var/log/booted-boot.log 2>&1 </dev/null
# tini, the host's init, reaps orphans. Under it: a user namespace made
# by the host's first id (so that, once this script, root here, maps the
# host's range to it, that process is root there without changing ids);
# then the host's root takes its capabilities there as it execs setpriv
# (after the mapping: with no-new-privs set before it, it would get none).
exec tini -s -- /bin/sh -c '
setpriv --reuid="$0" --regid="$0" --clear-groups -- unshare --user -- /bin/sh -c "read go </booted-go && exec setpriv --bounding-set=-all,{{.Caps}} --inh-caps=-all --no-new-privs -- /bin/sh /booted-init" &
pid=$!
self=$(readlink /proc/self/ns/user)
n=0
while [ "$(readlink /proc/$pid/ns/user)" = "$self" ]; do
	n=$((n+1)); [ $n -lt 1000 ] || { echo "boot.sh: no user namespace after 10 s"; exit 1; }
	sleep 0.01
done
echo "0 $0 65536" > /proc/$pid/uid_map
echo "0 $0 65536" > /proc/$pid/gid_map
# No user namespaces of its own (a kernel surface a container does not
# get): the limit of its namespace set to 0, through a proc of this
# script (the host sees its /proc/sys read-only).
mkdir /run/booted-proc && mount -t proc -o nosuid,nodev,noexec proc /run/booted-proc &&
	nsenter --target $pid --user -- /bin/sh -c "echo 0 > /run/booted-proc/sys/user/max_user_namespaces" &&
	umount /run/booted-proc && rmdir /run/booted-proc || { echo "boot.sh: could not bar user namespaces"; kill $pid; exit 1; }
echo go > /booted-go
wait $pid' "$U"
`))

// A local host's bounds (its cgroup's): memory in bytes, processes and
// threads, CPUs.
const (
	MemoryLimit = 1 << 30
	PidsLimit   = 1024
	CPUs        = 1
)

// cgroupDirs are where a host's cgroup may be, by its network namespace's
// name: cgroup v2's, or each v1 controller's.
func cgroupDirs(netns string) []string {
	var out []string
	for _, c := range []string{"", "memory", "pids", "cpu"} {
		out = append(out, filepath.Join("/sys/fs/cgroup", c, "booted", netns))
	}
	return out
}

// bound makes the host's cgroup (v2's, or v1's memory, pids and cpu) with
// its bounds and returns the files its boot joins them through; none
// where this machine has no cgroup to make (a warning in its boot log). A
// bound whose controller this machine's cgroups lack (no such file) is
// left out, named in the log.
func bound(netns string, log io.Writer) ([]string, error) {
	set := func(dir string, files map[string]string) error {
		for f, v := range files {
			if _, err := os.Stat(filepath.Join(dir, f)); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(log, "boot: no %s in %s (its controller is not enabled here): that bound is left out\n", f, dir)
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
				return fmt.Errorf("cgroup: %w", err)
			}
		}
		return nil
	}
	dirs := cgroupDirs(netns)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		if os.MkdirAll(dirs[0], 0o755) != nil {
			return nil, nil
		}
		os.WriteFile(filepath.Join(filepath.Dir(dirs[0]), "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0o644)
		return []string{filepath.Join(dirs[0], "cgroup.procs")}, set(dirs[0], map[string]string{
			"memory.max": strconv.Itoa(MemoryLimit), "pids.max": strconv.Itoa(PidsLimit), "cpu.max": fmt.Sprintf("%d 100000", 100000*CPUs)})
	}
	var procs []string
	for i, files := range []map[string]string{
		{"memory.limit_in_bytes": strconv.Itoa(MemoryLimit)}, {"pids.max": strconv.Itoa(PidsLimit)}, {"cpu.cfs_quota_us": strconv.Itoa(100000 * CPUs)},
	} {
		d := dirs[i+1]
		if os.MkdirAll(d, 0o755) != nil {
			return nil, nil
		}
		if err := set(d, files); err != nil {
			return nil, err
		}
		procs = append(procs, filepath.Join(d, "cgroup.procs"))
	}
	return procs, nil
}

// removeCgroups removes a stopped host's cgroups (empty once its
// processes are gone).
func removeCgroups(netns string) {
	for _, d := range cgroupDirs(netns) {
		os.Remove(d)
		os.Remove(filepath.Dir(d)) // booted's own, once no host has one
	}
}

// UIDs is how many ids a local host's user namespace maps (its root, 0,
// to the first): Debian's default range for a container.
const UIDs = 65536

// HostUID is the first id of this machine that host name of env's user
// namespace maps to: one range of UIDs per host, from 2^20 up (above any
// user's id), chosen by a hash of the host's environment and name (two
// hosts sharing a range by chance would share no files or processes: each
// has its own root, PID namespace and directories).
func HostUID(env, name string) int {
	h := fnv.New32a()
	h.Write([]byte(env + "/" + name))
	return 1<<20 + int(h.Sum32()%30000)*UIDs
}

// Caps are the capabilities a local host's processes keep (Docker's
// default set without mknod and setfcap): enough for sshd, services that
// bind low ports and drop to their own users, ping; nothing that reaches
// past the host (CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_NET_ADMIN,
// CAP_SYS_PTRACE, CAP_SYS_RAWIO, CAP_DAC_READ_SEARCH, CAP_MKNOD, …).
var Caps = []string{"chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap", "net_bind_service", "net_raw", "sys_chroot", "audit_write"}

// privateDirs are the directories a local host has of its own, bound into
// its root from the host's files (fs/ROOT-DIR with '/' as '-').
var privateDirs = []string{"root", "opt", "etc/booted", "etc/ssh", "var/log", "tmp"}

// Prepare creates the environment's bridge, which the controller's nginx
// listens on, and its sites' networks.
func (p *Provider) Prepare(ctx context.Context) error { return p.ensureBridges(ctx) }
