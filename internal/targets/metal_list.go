package targets

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"booted/internal/bmc"
	"booted/internal/provider/baremetal"
)

// metal returns the environment's baremetal provider, or says the targets
// need one.
func (s *session) metal(target string) (*baremetal.Provider, error) {
	p, ok := s.provs["baremetal"].(*baremetal.Provider)
	if !ok {
		return nil, fmt.Errorf("%s: %s lists bare-metal nodes and networks; the provider of %s is %s", s.env.Path, target, s.env.Name, s.env.Provider.Type)
	}
	return p, nil
}

type nodeRow struct {
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

// NodeList lists the nodes of ENV: NICs, BMC (never its password), power as
// its BMC says, whether it is installed (netboot off) and its inventory state.
func (r *Runner) NodeList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		p, err := s.metal("node:list")
		if err != nil {
			return err
		}
		hosts, err := s.store.Hosts(ctx, s.env.Name)
		if err != nil {
			return err
		}
		state := map[string]string{}
		for _, h := range hosts {
			state[h.Name] = string(h.State)
		}
		var rows []nodeRow
		for _, n := range p.Settings().Nodes {
			nic := n.Primary()
			power := "?"
			if st, err := p.PowerStatus(ctx, n.Name); err == nil {
				power = st
			} else if errors.Is(err, bmc.ErrUnreachable) {
				power = "no answer"
			}
			install := "netboot (installs at its next deploy)"
			if p.IsInstalled(n.Name) {
				install = "installed (boots its disk)"
			}
			st := state[n.Name]
			if st == "" {
				st = "-"
			}
			rows = append(rows, nodeRow{Name: n.Name, MAC: strings.ToLower(nic.MAC), IP: nic.IP, Network: nic.Network,
				BMC: fmt.Sprintf("%s@%s:%d", n.BMC.User, n.BMC.Address, n.BMC.Port), Power: power, Install: install, OSImage: p.OSImageOf(n.Name), State: st})
		}
		return printRows(r, rows, []string{"NAME", "MAC", "IP", "NETWORK", "BMC", "POWER", "INSTALL", "OSIMAGE", "STATE"}, func(x nodeRow) []string {
			return []string{x.Name, x.MAC, x.IP, x.Network, x.BMC, x.Power, x.Install, x.OSImage, x.State}
		})
	})
}

type netRow struct {
	Name    string `json:"name"`
	Bridge  string `json:"bridge"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
	Nodes   int    `json:"nodes"`
	DHCP    string `json:"dhcp"`
}

// NetList lists the networks of ENV with their dnsmasq (its pid, if it runs).
func (r *Runner) NetList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		p, err := s.metal("net:list")
		if err != nil {
			return err
		}
		return r.netList(ctx, s, p)
	})
}

// netList prints the networks of s with their dnsmasq.
func (r *Runner) netList(ctx context.Context, s *session, p *baremetal.Provider) error {
	{
		var rows []netRow
		for i, srv := range p.Servers() {
			nw := p.Settings().Networks[i]
			dhcp := "stopped"
			if pid := srv.PID(); pid != 0 {
				dhcp = fmt.Sprintf("dnsmasq pid %d", pid)
			}
			gw := nw.Gateway
			if gw == "" {
				gw = "none handed out"
			}
			rows = append(rows, netRow{Name: nw.Name, Bridge: nw.Bridge, Subnet: nw.Subnet, Gateway: gw, Nodes: len(srv.Nodes), DHCP: dhcp})
		}
		return printRows(r, rows, []string{"NAME", "BRIDGE", "SUBNET", "GATEWAY", "NODES", "DHCP"}, func(x netRow) []string {
			return []string{x.Name, x.Bridge, x.Subnet, x.Gateway, fmt.Sprint(x.Nodes), x.DHCP}
		})
	}
}
