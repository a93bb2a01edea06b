package session

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"booted/internal/config"
	"booted/internal/discovery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/osimage"
	"booted/internal/provider"
	"booted/internal/report"
)

// ImageRow is a host as image:list shows it.
type ImageRow struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Power string `json:"power"`
	State string `json:"state"`
	IP    string `json:"ip"`
	MAC   string `json:"mac"`
	ID    string `json:"id"`
}

// OSImageImport imports an installer ISO into ENV as osimage NAME ("": the
// name it reads off the ISO, distro-version-arch) and serves it (xCAT3's
// copycds, Cobbler's import).
func OSImageImport(ctx context.Context, o Options, envName, iso, name string) error {
	if name != "" {
		if err := osimage.CheckName(name); err != nil {
			return err
		}
	}
	return Change(ctx, o, envName, "osimage:import "+envName+" "+iso, func(s *Session) error {
		a, err := s.Metal("osimage:import")
		if err != nil {
			return err
		}
		in, err := a.ImportOSImage(ctx, iso, name)
		if err != nil {
			return err
		}
		if err := s.StartController(ctx); err != nil {
			return fmt.Errorf("osimage %s is imported, but not served: %w", in.Name, err)
		}
		if o.JSON {
			return json.NewEncoder(o.Out).Encode(in) // one line
		}
		fmt.Fprintf(o.Out, "%s: imported %s %s %s from %s (%s install, %d MB); served at %s/metal/images/%s/; install a node from it with node:deploy %s NODE %s\n",
			in.Name, in.Product, in.Version, in.Arch, iso, in.Method, in.Bytes>>20, "http://"+s.Env.CallbackAddr(), in.Name, envName, in.Name)
		return nil
	})
}

// OSImageDel removes imported osimage NAME of ENV; one a node installs
// from (or will, at its next deploy) is refused.
func OSImageDel(ctx context.Context, o Options, envName, name string) error {
	return Change(ctx, o, envName, "osimage:del "+envName+" "+name, func(s *Session) error {
		a, err := s.Metal("osimage:del")
		if err != nil {
			return err
		}
		if err := a.DeleteOSImage(name); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "%s: deleted\n", name)
		return nil
	})
}

// NodeDeploy installs node NODE of ENV from osimage OSIMAGE (xCAT3's
// deploy NODE --osimage) and follows it to ready: its next deploys use
// that osimage too.
func NodeDeploy(ctx context.Context, o Options, envName, node, img string) error {
	if err := Change(ctx, o, envName, "node:deploy "+envName+" "+node, func(s *Session) error {
		a, err := s.Metal("node:deploy")
		if err != nil {
			return err
		}
		// A node installed from another osimage is installed again.
		return a.ChooseOSImage(ctx, node, img)
	}); err != nil {
		return err
	}
	if err := ImageStart(ctx, o, envName, node); err != nil {
		return err
	}
	// Follow it: its stages, its phone-home, then ping and SSH.
	if err := HostsLogged(ctx, o, envName); err != nil {
		return err
	}
	if err := HostsFilter(ctx, o, envName); err != nil {
		return err
	}
	return View(ctx, o, envName, func(s *Session) error {
		h, err := s.Store.Host(ctx, s.Env.Name, node)
		if err != nil {
			return err
		}
		if !h.State.Up() {
			return fmt.Errorf("node %s: %s: %s", node, h.State, h.Reason)
		}
		return nil
	})
}

// NodeCreate records node NODE of ENV, listed in its env file, in the
// inventory after checking its BMC answers (xCAT3's create).
func NodeCreate(ctx context.Context, o Options, envName, node string) error {
	return EachHost(ctx, o, "node:create", envName, node, func(s *Session, n string) error {
		a, err := s.Metal("node:create")
		if err == nil {
			err = a.CheckListed(n)
		}
		if err != nil {
			return err
		}
		return s.BuildHost(ctx, n)
	})
}

// NodeDel powers node NODE off, forgets its install and its osimage
// choice, and marks it terminated (xCAT3's delete).
func NodeDel(ctx context.Context, o Options, envName, node string) error {
	return EachHost(ctx, o, "node:del", envName, node, func(s *Session, n string) error {
		if _, err := s.Metal("node:del"); err != nil {
			return err
		}
		return s.DeleteHost(ctx, n)
	})
}

// NetCreate makes network NAME of ENV: its bridge and its dnsmasq
// (xCAT3's network-create).
func NetCreate(ctx context.Context, o Options, envName, name string) error {
	return Change(ctx, o, envName, "net:create "+envName+" "+name, func(s *Session) error {
		a, err := s.Metal("net:create")
		if err != nil {
			return err
		}
		if err := a.CreateNetwork(ctx, name); err != nil {
			return err
		}
		return report.Rows(o.Out, o.JSON, a.Networks(), metaladmin.NetHeader, metaladmin.NetRow.Cells)
	})
}

// NetDel stops network NAME's dnsmasq and removes its bridge; refused
// while a node on it is in use.
func NetDel(ctx context.Context, o Options, envName, name string) error {
	return Change(ctx, o, envName, "net:del "+envName+" "+name, func(s *Session) error {
		a, err := s.Metal("net:del")
		if err != nil {
			return err
		}
		if err := a.DeleteNetwork(ctx, name); err != nil {
			return err
		}
		return report.Rows(o.Out, o.JSON, a.Networks(), metaladmin.NetHeader, metaladmin.NetRow.Cells)
	})
}

// Power switches host NODE of ENV (on, off, cycle) or shows its power
// (status): a bare-metal node through its BMC; a host of a provider
// without one (local hosts, qemu and VirtualBox VMs) through the provider,
// as image:stop and image:start do (on boots and enrolls it again).
func Power(ctx context.Context, o Options, what, envName, node string) error {
	run := func(ctx context.Context, envName, what string, fn func(s *Session) error) error {
		return Change(ctx, o, envName, what, fn)
	}
	if what == "status" {
		run = func(ctx context.Context, envName, _ string, fn func(s *Session) error) error {
			return View(ctx, o, envName, fn)
		}
	}
	return run(ctx, envName, "power:"+what+" "+envName+" "+node, func(s *Session) error {
		sw, ok := s.ProvOf(node).(provider.Switch)
		if !ok {
			return s.powerByProvider(ctx, what, node)
		}
		var err error
		switch what {
		case "on":
			err = sw.PowerOn(ctx, node)
		case "off":
			err = sw.PowerOff(ctx, node)
		case "cycle":
			err = sw.PowerCycle(ctx, node)
		case "status":
			var st string
			if st, err = sw.PowerStatus(ctx, node); err == nil {
				fmt.Fprintf(o.Out, "%s: power %s\n", node, st)
			}
		default:
			err = fmt.Errorf("power:%s: use on, off, cycle or status", what)
		}
		return err
	})
}

// HostsRebuild provisions HOST again from nothing (clusto's rebuild): it
// takes the host out of the load balancers first (they reload gracefully,
// finishing the requests in flight), powers it off and deletes it, builds
// and boots it with a new enrollment (so a new host key, pinned in place
// of the old one, which is refused from then on), then deploys its role's
// service and puts it back. Hosts the provider does not own (static) are
// refused.
func HostsRebuild(ctx context.Context, o Options, envName, host string) error {
	return Change(ctx, o, envName, "hosts:rebuild "+envName+" "+host, func(s *Session) error {
		return s.Rebuild(ctx, host)
	})
}

// EachHost opens ENV and calls fn for each of the comma-separated hosts,
// then lists the environment's hosts.
func EachHost(ctx context.Context, o Options, what, envName, hosts string, fn func(s *Session, name string) error) error {
	ns, err := config.HostList(hosts)
	if err != nil {
		return err
	}
	return Change(ctx, o, envName, what+" "+envName+" "+hosts, func(s *Session) error {
		for _, n := range ns {
			if err := fn(s, n); err != nil {
				return err
			}
		}
		return s.PrintImages(ctx)
	})
}

// ImageStart boots hosts (comma-separated names), building them first if
// needed. A host already running is left alone.
func ImageStart(ctx context.Context, o Options, envName, hosts string) error {
	started := false
	return EachHost(ctx, o, "image:start", envName, hosts, func(s *Session, n string) error {
		if !started {
			if err := s.StartController(ctx); err != nil {
				return err
			}
			started = true
		}
		return s.Life().Provision(ctx, n)
	})
}

// PrintImages lists the hosts the providers have made, with their
// inventory state (image:list).
func (s *Session) PrintImages(ctx context.Context) error {
	insts, err := s.Provs.List(ctx)
	if err != nil {
		return err
	}
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	byName := map[string]inventory.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	rows := make([]ImageRow, 0, len(insts))
	for _, in := range insts {
		h := byName[in.Name]
		role := h.Role
		if role == "" {
			role, _ = s.Env.RoleOf(in.Name)
		}
		rows = append(rows, ImageRow{Name: in.Name, Role: role, Power: string(in.State), State: string(h.State), IP: in.Addr, MAC: in.MAC, ID: in.ID})
	}
	return report.Rows(s.Out, s.JSON, rows, []string{"NAME", "ROLE", "POWER", "STATE", "IP", "MAC", "ID"}, func(x ImageRow) []string {
		return []string{x.Name, x.Role, x.Power, x.State, x.IP, x.MAC, x.ID}
	})
}

// HostsLogged records the hosts that phoned home (reading the boot log from
// where discovery last stopped), waits for hosts still booting until they
// phone home or pass the boot timeout (then they are failed), and prints the
// hosts and the count of rejected callbacks.
//
// It holds the environment only while it changes the inventory: the
// printing (10,000 hosts, a slow terminal) reads it after, so that an
// operation waiting for the environment does not wait for the terminal.
func HostsLogged(ctx context.Context, o Options, envName string) error {
	if err := Change(ctx, o, envName, "hosts:logged "+envName, func(s *Session) error { return s.Logged(ctx) }); err != nil {
		return err
	}
	return View(ctx, o, envName, func(s *Session) error {
		if err := s.PrintHosts(ctx); err != nil {
			return err
		}
		return s.PrintRejected(ctx)
	})
}

// HostsFilter checks every discovered host with ICMP ping and an SSH login
// against its pinned key: those that pass are ready, those that fail are
// failed with the reason. It writes inventory/ENV/known_hosts for plain ssh.
func HostsFilter(ctx context.Context, o Options, envName string) error {
	return Change(ctx, o, envName, "hosts:filter "+envName, func(s *Session) error {
		if err := s.Filter(ctx); err != nil {
			return err
		}
		return s.PrintHosts(ctx)
	})
}

// powerByProvider is Power for a host without a BMC.
func (s *Session) powerByProvider(ctx context.Context, what, node string) error {
	if _, ok := s.ProvOf(node).(provider.Power); !ok {
		return fmt.Errorf("%s: the %s provider of %s cannot power hosts off and on (static hosts are someone else's)", s.Env.Path, s.Env.ProviderOf(node), node)
	}
	switch what {
	case "status":
		list, err := s.ProvOf(node).List(ctx)
		if err != nil {
			return err
		}
		for _, in := range list {
			if in.Name == node {
				st := "off"
				if in.State == provider.Running {
					st = "on"
				}
				fmt.Fprintf(s.Out, "%s: power %s\n", node, st)
				return nil
			}
		}
		return fmt.Errorf("host %s: %w (hosts:list %s shows the inventory)", node, provider.ErrNoInstance, s.Env.Name)
	case "off":
		return s.Life().Stop(ctx, node)
	case "on", "cycle":
		if what == "cycle" {
			if err := s.Life().Stop(ctx, node); err != nil {
				return err
			}
		}
		if err := s.StartController(ctx); err != nil {
			return err
		}
		return s.Life().Provision(ctx, node)
	}
	return fmt.Errorf("power:%s: use on, off, cycle or status", what)
}

// PrintRejected says how many callbacks were rejected, and why, then the
// last alerts (not in JSON output: counters are not part of the host list).
func (s *Session) PrintRejected(ctx context.Context) error {
	total, parts, err := discovery.Rejected(ctx, s.Store, s.Env.Name)
	if err != nil || s.JSON { // counters are not part of the host list
		return err
	}
	if _, err = fmt.Fprintf(s.Out, "rejected callbacks: %d (%s)\n", total, parts); err != nil {
		return err
	}
	return s.PrintAlerts(ctx)
}

// PrintAlerts shows the last host-key-mismatch alerts: callbacks for a
// pinned host with another key or from another address.
func (s *Session) PrintAlerts(ctx context.Context) error {
	alerts, err := discovery.Alerts(ctx, s.Store, s.Env.Name, 10)
	for _, a := range alerts {
		fmt.Fprintf(s.Out, "ALERT %s %s %s: %s\n", a.Kind, a.Host, a.Time.UTC().Format(time.RFC3339), a.Detail)
	}
	return err
}
