// Package metaladmin is the administration of an environment's bare-metal
// nodes, networks and osimages (xCAT3's node, network and osimage commands,
// Metaleuca's systems), above the bare-metal provider: the one package above
// the providers that names it. It answers with typed rows; printing them is
// the caller's.
package metaladmin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"booted/internal/atomicfile"
	"booted/internal/bmc"
	"booted/internal/config"
	"booted/internal/ec2api"
	"booted/internal/ec2host"
	"booted/internal/inventory"
	"booted/internal/osimage"
	"booted/internal/provider"
	"booted/internal/provider/baremetal"
)

// Type is the bare-metal provider's name in env files and the registry.
const Type = "baremetal"

// ImportTimeout bounds copying an installer ISO (DVDs are gigabytes).
const ImportTimeout = time.Hour

// Admin administers the bare-metal provider of an environment.
type Admin struct {
	P     *baremetal.Provider
	Env   *config.Env
	Store *inventory.Store
}

// Of returns the admin of env's bare-metal provider among provs (the
// environment's or a role's, by type: the one lookup), or says target
// needs one.
func Of(env *config.Env, provs map[string]provider.Provider, store *inventory.Store, target string) (*Admin, error) {
	p, ok := provs[Type].(*baremetal.Provider)
	if !ok {
		return nil, fmt.Errorf("%s: %s lists bare-metal nodes and networks; the provider of %s is %s", env.Path, target, env.Name, env.Provider.Type)
	}
	return &Admin{P: p, Env: env, Store: store}, nil
}

// ForInstances says whether instances run on a's nodes: instances are
// hosts of no role, built by the environment's own provider, so only when
// that is the bare-metal one (a role's bare-metal nodes are the role's).
func (a *Admin) ForInstances() bool { return a.Env.Provider.Type == Type }

// CheckListed refuses a node the env file does not list.
func (a *Admin) CheckListed(node string) error {
	if !a.P.Listed(node) {
		return fmt.Errorf("node %s is not listed in provider.baremetal.nodes of %s: add it there (NICs, BMC) first", node, a.Env.Path)
	}
	return nil
}

// NodeRow is a node as node:list shows it.
type NodeRow struct {
	Name    string `json:"name"`
	MAC     string `json:"mac"`
	IP      string `json:"ip"`
	Network string `json:"network"`
	BMC     string `json:"bmc"`
	Power   string `json:"power"`
	Install string `json:"install"`
	OSImage string `json:"osimage"`
	State   string `json:"state"`
}

// NodeHeader heads NodeRow.Cells.
var NodeHeader = []string{"NAME", "MAC", "IP", "NETWORK", "BMC", "POWER", "INSTALL", "OSIMAGE", "STATE"}

// Cells is x as a table's line.
func (x NodeRow) Cells() []string {
	return []string{x.Name, x.MAC, x.IP, x.Network, x.BMC, x.Power, x.Install, x.OSImage, x.State}
}

// Nodes returns the nodes: NICs, BMC (never its password), power as its
// BMC says, whether it is installed (netboot off) and its inventory state.
func (a *Admin) Nodes(ctx context.Context) ([]NodeRow, error) {
	hosts, err := a.Store.Hosts(ctx, a.Env.Name)
	if err != nil {
		return nil, err
	}
	state := map[string]string{}
	for _, h := range hosts {
		state[h.Name] = string(h.State)
	}
	rows := []NodeRow{}
	for _, n := range a.P.Settings().Nodes {
		nic := n.Primary()
		power := "?"
		if st, err := a.P.PowerStatus(ctx, n.Name); err == nil {
			power = st
		} else if errors.Is(err, bmc.ErrUnreachable) {
			power = "no answer"
		}
		install := "netboot (installs at its next deploy)"
		if a.P.IsInstalled(n.Name) {
			install = "installed (boots its disk)"
		}
		st := state[n.Name]
		if st == "" {
			st = "-"
		}
		rows = append(rows, NodeRow{Name: n.Name, MAC: strings.ToLower(nic.MAC), IP: nic.IP, Network: nic.Network,
			BMC: fmt.Sprintf("%s@%s:%d", n.BMC.User, n.BMC.Address, n.BMC.Port), Power: power, Install: install, OSImage: a.P.OSImageOf(n.Name), State: st})
	}
	return rows, nil
}

// NetRow is a network as net:list shows it.
type NetRow struct {
	Name    string `json:"name"`
	Bridge  string `json:"bridge"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
	Nodes   int    `json:"nodes"`
	DHCP    string `json:"dhcp"`
}

// NetHeader heads NetRow.Cells.
var NetHeader = []string{"NAME", "BRIDGE", "SUBNET", "GATEWAY", "NODES", "DHCP"}

// Cells is x as a table's line.
func (x NetRow) Cells() []string {
	return []string{x.Name, x.Bridge, x.Subnet, x.Gateway, fmt.Sprint(x.Nodes), x.DHCP}
}

// Networks returns the networks with their dnsmasq (its pid, if it runs).
func (a *Admin) Networks() []NetRow {
	rows := []NetRow{}
	for i, srv := range a.P.Servers() {
		nw := a.P.Settings().Networks[i]
		dhcp := "stopped"
		if pid := srv.PID(); pid != 0 {
			dhcp = fmt.Sprintf("dnsmasq pid %d", pid)
		}
		gw := nw.Gateway
		if gw == "" {
			gw = "none handed out"
		}
		rows = append(rows, NetRow{Name: nw.Name, Bridge: nw.Bridge, Subnet: nw.Subnet, Gateway: gw, Nodes: len(srv.Nodes), DHCP: dhcp})
	}
	return rows
}

// CreateNetwork makes network name: its bridge and its dnsmasq.
func (a *Admin) CreateNetwork(ctx context.Context, name string) error {
	return a.P.NetworkUp(ctx, name)
}

// DeleteNetwork stops network name's dnsmasq and removes its bridge;
// refused while a node on it is in use.
func (a *Admin) DeleteNetwork(ctx context.Context, name string) error {
	var busy []string
	for _, n := range a.P.NodesOn(name) {
		if h, err := a.Store.Host(ctx, a.Env.Name, n); err == nil && h.State.InUse() {
			busy = append(busy, n+" ("+string(h.State)+")")
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("network %s: nodes %s are on it: node:del them first", name, strings.Join(busy, ", "))
	}
	return a.P.NetworkDown(ctx, name)
}

// PrepareNetworks brings up the networks this process serves (a site's
// conductor: its site's dnsmasq and the files its nginx serves).
func (a *Admin) PrepareNetworks(ctx context.Context) error { return a.P.Prepare(ctx) }

// OSImageRow is an osimage as osimage:list shows it.
type OSImageRow struct {
	osimage.Info
	Nodes []string `json:"nodes"`
}

// OSImageHeader heads OSImageRow.Cells.
var OSImageHeader = []string{"NAME", "DISTRO", "VERSION", "ARCH", "INSTALL", "SIZE", "IMPORTED", "NODES"}

// Cells is x as a table's line.
func (x OSImageRow) Cells() []string {
	size, when := "-", "built by booted"
	if !x.Imported.IsZero() {
		size, when = fmt.Sprintf("%d MB", x.Bytes>>20), x.Imported.Format(time.DateTime)
	}
	return []string{x.Name, x.Product, x.Version, x.Arch, x.Method, size, when, strings.Join(x.Nodes, ",")}
}

// OSImages returns the one booted builds (an image written by booted's
// installer) and the imported ones, with the nodes that install from each.
func (a *Admin) OSImages() ([]OSImageRow, error) {
	imported, err := osimage.List(a.P.OSImagesDir())
	if err != nil {
		return nil, err
	}
	builtIn := osimage.Info{Name: baremetal.BuiltIn, Distro: "debian", Product: "Debian GNU/Linux (booted's image)", Version: "12", Arch: "amd64", Method: osimage.MethodImage}
	rows := []OSImageRow{{Info: builtIn, Nodes: a.P.UsedBy(baremetal.BuiltIn)}}
	for _, in := range imported {
		rows = append(rows, OSImageRow{Info: in, Nodes: a.P.UsedBy(in.Name)})
	}
	for i := range rows {
		if rows[i].Nodes == nil {
			rows[i].Nodes = []string{}
		}
	}
	return rows, nil
}

// ImportOSImage copies installer ISO iso in as osimage name ("": the name
// it reads off the ISO), within ImportTimeout. The caller serves it.
func (a *Admin) ImportOSImage(ctx context.Context, iso, name string) (osimage.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, ImportTimeout)
	defer cancel()
	return osimage.Import(ctx, iso, a.P.OSImagesDir(), name)
}

// DeleteOSImage removes imported osimage name; the built-in one and one a
// node installs from (or will, at its next deploy) are refused.
func (a *Admin) DeleteOSImage(name string) error {
	if name == baremetal.BuiltIn {
		return fmt.Errorf("osimage %s is the one booted builds; it cannot be deleted", name)
	}
	if used := a.P.UsedBy(name); len(used) > 0 {
		return fmt.Errorf("osimage %s: nodes %s install from it (node:deploy them from another osimage, or node:del them, first)", name, strings.Join(used, ", "))
	}
	if err := a.P.Unserve(name); err != nil {
		return err
	}
	return osimage.Delete(a.P.OSImagesDir(), name)
}

// ChooseOSImage makes node install from osimage img at its next deploy
// (and the ones after), and forgets its install so that it happens; a
// node in use (ready or serving) is refused: image:del it first.
func (a *Admin) ChooseOSImage(ctx context.Context, node, img string) error {
	h, err := a.Store.Host(ctx, a.Env.Name, node)
	if err == nil && h.State.Up() {
		return fmt.Errorf("node %s is %s: image:del %s %s first (node:deploy installs a node anew)", node, h.State, a.Env.Name, node)
	}
	if err := a.P.SetOSImage(node, img); err != nil {
		return err
	}
	return a.P.Forget(node)
}

// MaxBMCPassword is IPMI 2.0's longest password.
const MaxBMCPassword = 20

// SetBMCPassword keeps node's BMC password, read from in (one line), in
// its file (0600; never on a command line), and returns the file's path.
func (a *Admin) SetBMCPassword(node string, in io.Reader) (string, error) {
	if !a.P.Listed(node) {
		return "", fmt.Errorf("node %s is not listed in provider.baremetal.nodes of %s", node, a.Env.Path)
	}
	b, err := io.ReadAll(io.LimitReader(in, 4096))
	if err != nil {
		return "", err
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" || strings.ContainsAny(pw, "\n\"") || len(pw) > MaxBMCPassword {
		return "", fmt.Errorf("node:secret %s %s: give the password on standard input, one line without quotes, at most %d characters (IPMI 2.0)", a.Env.Name, node, MaxBMCPassword)
	}
	path := a.P.BMCPasswordFile(node)
	return path, atomicfile.Write(path, []byte(pw), 0o600)
}

// reservationKey is where the user a node is reserved for is kept.
func reservationKey(node string) string { return "reservation/" + node }

// SystemRow is a node as systems:list shows it (Metaleuca's
// describe-systems).
type SystemRow struct {
	Node     string `json:"node"`
	Reserved string `json:"reservedFor"`
	State    string `json:"state"`
	Instance string `json:"instance"`
	Owner    string `json:"owner"`
}

// SystemHeader heads SystemRow.Cells.
var SystemHeader = []string{"NODE", "RESERVED FOR", "STATE", "INSTANCE", "OWNER"}

// Cells is x as a table's line.
func (x SystemRow) Cells() []string {
	return []string{x.Node, orDash(x.Reserved), x.State, orDash(x.Instance), orDash(x.Owner)}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Systems returns who each node is reserved for, its state, the instance
// on it and its owner.
func (a *Admin) Systems(ctx context.Context) ([]SystemRow, error) {
	rows := []SystemRow{}
	for _, n := range a.P.Settings().Nodes {
		row := SystemRow{Node: n.Name, State: "free"}
		if _, err := a.Store.Get(ctx, a.Env.Name, reservationKey(n.Name), &row.Reserved); err != nil {
			return nil, err
		}
		if role, ok := a.Env.RoleOf(n.Name); ok {
			row.State = "role " + role
		}
		if h, err := a.Store.Host(ctx, a.Env.Name, n.Name); err == nil && ec2host.Holds(h) {
			row.State, row.Instance, row.Owner = string(h.State), ec2host.ID(h), h.Attrs[ec2host.AttrOwner]
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// Reserve reserves nodes for user (Metaleuca's reserve-systems): only
// user's instances run on them; user "" releases them. A node another
// user's instance holds, or reserved for another user, is refused, and
// then none is changed. It returns a line per node.
func (a *Admin) Reserve(ctx context.Context, nodes []string, user string) ([]string, error) {
	var done []string
	err := a.Store.Update(ctx, func(tx *inventory.Tx) error {
		done = done[:0]
		for _, n := range nodes {
			if !a.P.Listed(n) {
				return fmt.Errorf("node %s is not listed in provider.baremetal.nodes of %s", n, a.Env.Path)
			}
			var holder string
			if _, err := tx.Get(a.Env.Name, reservationKey(n), &holder); err != nil {
				return err
			}
			if user != "" && holder != "" && holder != user {
				return fmt.Errorf("node %s is reserved for %s (systems:release it first)", n, holder)
			}
			if h, err := tx.Host(a.Env.Name, n); user != "" && err == nil && ec2host.Holds(h) && h.Attrs[ec2host.AttrOwner] != user {
				return fmt.Errorf("node %s runs instance %s of %s", n, ec2host.ID(h), h.Attrs[ec2host.AttrOwner])
			}
			var err error
			if user == "" {
				err = tx.Delete(a.Env.Name, reservationKey(n))
			} else {
				err = tx.Put(a.Env.Name, reservationKey(n), user)
			}
			if err != nil {
				return err
			}
			what := "released"
			if user != "" {
				what = "reserved for " + user
			}
			if err := tx.Record(inventory.Event{Env: a.Env.Name, Host: n, Kind: "system", Detail: what}); err != nil {
				return err
			}
			done = append(done, n+": "+what)
		}
		return nil
	})
	return done, err
}

// Free returns the nodes n new instances of user of size run on: nodes no
// role of the env file uses, no instance holds and no other user reserved,
// user's reserved nodes first (Metaleuca's reserve-systems).
func (a *Admin) Free(tx *inventory.Tx, user string, n int, size ec2api.InstanceType) ([]string, error) {
	var reserved, free []string
	for _, node := range a.P.Settings().Nodes {
		if _, declared := a.Env.RoleOf(node.Name); declared {
			continue
		}
		if node.CPUs < size.VCPUs || node.MemoryMB < size.MemoryMiB || node.DiskGB < size.DiskGB {
			continue // smaller than the size asked for
		}
		if h, err := tx.Host(a.Env.Name, node.Name); err == nil && h.State.InUse() {
			continue
		}
		var holder string
		if _, err := tx.Get(a.Env.Name, reservationKey(node.Name), &holder); err != nil {
			return nil, err
		}
		switch holder {
		case "":
			free = append(free, node.Name)
		case user:
			reserved = append(reserved, node.Name)
		}
	}
	free = append(reserved, free...)
	if len(free) < n {
		return nil, ec2api.Errorf("InsufficientInstanceCapacity", "There is not enough capacity: %d free bare-metal nodes of %s (%d CPUs, %d MiB, %d GB) or more for %d instances", len(free), size.Name, size.VCPUs, size.MemoryMiB, size.DiskGB, n)
	}
	return free[:n], nil
}
