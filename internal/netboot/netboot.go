// Package netboot serves a network's machines their boot: dnsmasq on the
// network's bridge (DHCP with a static lease per node and no DNS, the
// router advertisement iPXE needs, TFTP for PXE ROMs that are not iPXE),
// and one iPXE script per node that either installs it (netboot) or boots
// its disk. Netboot happens once: once a node is installed its script
// boots the disk.
//
// dnsmasq runs as a child booted supervises like the controller's nginx:
// a pid file, its configuration checked with dnsmasq --test before use,
// stopped by its pid.
package netboot

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/template"
	"time"

	"booted/internal/bridge"
	"booted/internal/pidfile"
)

// Network is one network booted serves.
type Network struct {
	Name string
	// Bridge is the interface dnsmasq is bound to.
	Bridge string
	// Subnet, with the bridge's address (the server) as Server.
	Subnet netip.Prefix
	Server netip.Addr
	// Gateway and DNS are handed out only when set.
	Gateway netip.Addr
	DNS     []netip.Addr
	// Dynamic, if set, is a range leased to machines that are not nodes
	// ("10.82.0.100,10.82.0.150"); empty: nodes only.
	Dynamic string
}

// Node is a machine that netboots on a network.
type Node struct {
	Name string
	MAC  string
	Addr netip.Addr
}

// Server is the dnsmasq of one network, with its files under Dir.
type Server struct {
	Net   Network
	Nodes []Node
	// Dir holds dnsmasq.conf, its pid file, log and lease file, the TFTP
	// root and the iPXE scripts (node/MAC.ipxe).
	Dir string
	// BootURL is where iPXE fetches boot.ipxe (http://CONTROLLER/metal/boot.ipxe).
	BootURL string
	// Netns is the network namespace the bridge is in (a site's); "":
	// this machine's.
	Netns string
}

func (s *Server) conf() string     { return filepath.Join(s.Dir, "dnsmasq.conf") }
func (s *Server) pidFile() string  { return filepath.Join(s.Dir, "dnsmasq.pid") }
func (s *Server) Log() string      { return filepath.Join(s.Dir, "dnsmasq.log") }
func (s *Server) Leases() string   { return filepath.Join(s.Dir, "dnsmasq.leases") }
func (s *Server) tftpRoot() string { return filepath.Join(s.Dir, "tftp") }

var confTmpl = template.Must(template.New("dnsmasq").Parse(`# dnsmasq of network {{.Net.Name}} on {{.Net.Bridge}}, written by booted.
# DHCP (a static lease per node), the RA iPXE needs, TFTP; no DNS.
port=0
user=root
interface={{.Net.Bridge}}
bind-interfaces
except-interface=lo
pid-file={{.Pid}}
log-facility={{.Log}}
log-dhcp
dhcp-leasefile={{.Leases}}
dhcp-authoritative
{{- if .Net.Dynamic}}
dhcp-range={{.Net.Dynamic}},{{.Mask}},1h
{{- else}}
dhcp-range={{.Net.Subnet.Masked.Addr}},static,{{.Mask}},1h
{{- end}}
{{- if .Net.Gateway.IsValid}}
dhcp-option=option:router,{{.Net.Gateway}}
{{- else}}
dhcp-option=option:router
{{- end}}
{{- if .DNS}}
dhcp-option=option:dns-server,{{.DNS}}
{{- else}}
dhcp-option=option:dns-server
{{- end}}
{{- range .Nodes}}
dhcp-host={{.MAC}},{{.Addr}},{{.Name}}
{{- end}}
# iPXE (user class iPXE, option 175) fetches its script over HTTP; other PXE
# ROMs first load iPXE over TFTP.
dhcp-match=set:ipxe,175
dhcp-boot=tag:ipxe,{{.BootURL}}
dhcp-boot=tag:!ipxe,undionly.kpxe
enable-tftp
tftp-root={{.TFTP}}
# Router advertisements with lifetime 0 (not a router): iPXE waits 13 s for
# IPv6 autoconfiguration when nothing answers.
enable-ra
dhcp-range=::,constructor:{{.Net.Bridge}},ra-only
ra-param={{.Net.Bridge}},10,0
`))

// Render returns the dnsmasq configuration.
func (s *Server) Render() ([]byte, error) {
	var dns []string
	for _, d := range s.Net.DNS {
		dns = append(dns, d.String())
	}
	nodes := append([]Node(nil), s.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	var b bytes.Buffer
	err := confTmpl.Execute(&b, map[string]any{
		"Net": s.Net, "Nodes": nodes, "Pid": s.pidFile(), "Log": s.Log(), "Leases": s.Leases(), "TFTP": s.tftpRoot(),
		"Mask": netmask(s.Net.Subnet), "DNS": strings.Join(dns, ","), "BootURL": s.BootURL,
	})
	return b.Bytes(), err
}

func netmask(p netip.Prefix) string {
	m := ^uint32(0) << (32 - p.Bits())
	return fmt.Sprintf("%d.%d.%d.%d", byte(m>>24), byte(m>>16), byte(m>>8), byte(m))
}

// Needs are the commands netboot runs, and their Debian packages.
var Needs = map[string]string{"dnsmasq": "dnsmasq-base", ipxeUndi: "ipxe"}

// ipxeUndi is Debian's iPXE for PXE ROMs that are not iPXE (package ipxe).
const ipxeUndi = "/usr/lib/ipxe/undionly.kpxe"

// Ensure writes the configuration (checked with dnsmasq --test) and starts
// dnsmasq, or restarts it when its configuration changed.
func (s *Server) Ensure(ctx context.Context) error {
	for _, d := range []string{s.Dir, s.tftpRoot()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// One at a time (two conductors of a site may start at once): the
	// second finds the first's dnsmasq running its configuration.
	unlock, err := bridge.LockFile(filepath.Join(s.Dir, "ensure.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if b, err := os.ReadFile(ipxeUndi); err == nil {
		os.WriteFile(filepath.Join(s.tftpRoot(), "undionly.kpxe"), b, 0o644)
	}
	conf, err := s.Render()
	if err != nil {
		return err
	}
	old, _ := os.ReadFile(s.conf())
	if pid := s.PID(); pid != 0 && bytes.Equal(old, conf) {
		return nil
	}
	next := s.conf() + ".next"
	if err := os.WriteFile(next, conf, 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "dnsmasq", "--test", "--conf-file="+next).CombinedOutput(); err != nil {
		os.Remove(next)
		return fmt.Errorf("network %s: dnsmasq refuses the configuration (the old one is kept): %s", s.Net.Name, bytes.TrimSpace(out))
	}
	if err := os.Rename(next, s.conf()); err != nil {
		return err
	}
	if err := s.Stop(ctx); err != nil {
		return err
	}
	out, err := bridge.CommandIn(ctx, s.Netns, "dnsmasq", "--conf-file="+s.conf()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("network %s: start dnsmasq on %s: %v: %s", s.Net.Name, s.Net.Bridge, err, bytes.TrimSpace(out))
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.PID() == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("network %s: dnsmasq did not start (see %s)", s.Net.Name, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// PID returns the pid of the running dnsmasq of this network, or 0.
func (s *Server) PID() int { return pidfile.Read(s.pidFile(), s.conf()) }

// Stop stops dnsmasq by its pid.
func (s *Server) Stop(ctx context.Context) error {
	if err := pidfile.Stop(ctx, s.pidFile(), s.conf(), syscall.SIGTERM, 5*time.Second); err != nil {
		return err
	}
	os.Remove(s.pidFile())
	return nil
}

// Lease returns when the node with mac last got its lease, from dnsmasq's
// log (zero if it has not).
func (s *Server) Lease(mac string) time.Time {
	f, err := os.Open(s.Log())
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	var last time.Time
	sc := bufio.NewScanner(f)
	mac = strings.ToLower(mac)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, "DHCPACK(") || !strings.Contains(strings.ToLower(l), mac) {
			continue
		}
		// "Nov 26 14:50:01 dnsmasq-dhcp[123]: 456 DHCPACK(br) 10.82.0.11 52:54:..."
		if len(l) >= 15 {
			if t, err := time.ParseInLocation("Jan _2 15:04:05", l[:15], time.Local); err == nil {
				now := time.Now()
				last = time.Date(now.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.Local)
			}
		}
	}
	return last
}

// BootScript is the script every iPXE client fetches first (dnsmasq hands
// out its URL): it chains to its own node's script, by MAC, under nodeURL
// (http://CONTROLLER/metal/node/).
func BootScript(nodeURL string) []byte {
	return []byte("#!ipxe\n# booted: every machine of this network chains to its own script, by MAC.\nchain " + nodeURL + "${net0/mac:hexhyp}.ipxe || exit\n")
}

// InstallScript is a node's script while it installs: the installer's
// kernel and initrd, with its arguments.
func InstallScript(name, kernel, initrd, args string) []byte {
	return []byte(fmt.Sprintf("#!ipxe\n# booted: install %s.\nkernel %s %s\ninitrd %s\nboot\n", name, kernel, args, initrd))
}

// DiskScript is a node's script once installed: boot its disk (netboot
// happens once).
func DiskScript(name string) []byte {
	return []byte(fmt.Sprintf("#!ipxe\n# booted: %s is installed; boot from its disk.\nsanboot --no-describe --drive 0x80 || exit\n", name))
}

// ScriptName is the file name of a node's script: its MAC, hyphenated.
func ScriptName(mac string) string {
	return strings.ReplaceAll(strings.ToLower(mac), ":", "-") + ".ipxe"
}
