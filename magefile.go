//go:build mage

// booted stands up, deploys, tests and scales environments of hosts (ENV is a file envs/ENV.yaml; options are BOOTED_* variables, see README.md).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/magefile/mage/mg"

	"booted/internal/cli"
	"booted/internal/freshcheck"
	"booted/internal/outcome"
	"booted/internal/selftest"
	"booted/internal/settings"
	"booted/internal/targets"
)

// init refuses a command line that is not whole (an unknown word, a
// missing argument, an environment that does not exist, a BOOTED_* value a
// variable does not accept) before any target runs: Mage runs each target
// before it reads the next word.
func init() {
	s, err := settings.FromEnviron()
	if err == nil {
		err = cli.Check(os.Args[1:], filepath.Join(s.Root, "envs"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(2)
	}
}

// run reads the settings (BOOTED_*, refusing values they do not accept)
// and calls fn. The exit status says how it ended: 0 done, 1 failed, 2
// refused input (nothing was done), 3 hosts unreachable (none failed).
func run(fn func(r *targets.Runner) error) error {
	r, err := targets.FromEnviron()
	if err != nil {
		return mg.Fatal(2, err)
	}
	return exitCode(fn(r))
}

func exitCode(err error) error {
	if c := outcome.ExitCode(err); c > 1 {
		return mg.Fatal(c, err)
	}
	return err
}

// Default is what `go run mage.go` runs.
var Default = Local

// Local brings up the default local environment (env:startAll local), installing the Debian packages it needs when run as root.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func Local(ctx context.Context) error {
	if err := targets.Setup(ctx, os.Stderr); err != nil {
		return err
	}
	return run(func(r *targets.Runner) error { return r.EnvStartAll(ctx, "local") })
}

// Test installs what the tests need (as root, with apt-get), runs every test (main pass, then the race detector and 15 s of each fuzz target) and prints a table of what ran, each skip with its reason; with CI set a skip fails it.
//
// Settings: BOOTED_TEST_ARGS (run go test with these arguments instead, e.g. "-run TestX ./internal/query/").
func Test(ctx context.Context) error { return selftest.Run(ctx, os.Stdout) }

// TestInstall installs what `test` needs (as root, with apt-get) and checks that every declared file and command is there; it runs no test.
func TestInstall(ctx context.Context) error { return selftest.Install(ctx, os.Stdout) }

// TestScale runs the tests too long for test (TestScale_*: 1,000 local hosts on one bridge), with the table of what ran; CI runs it after test.
func TestScale(ctx context.Context) error { return selftest.Scale(ctx, os.Stdout) }

// TestFresh checks that a fresh Debian machine passes: in a minimal Debian root (debootstrap, kept in /var/cache/booted/fresh), chrooted, testInstall, then the default target and env:destroy in a network namespace of its own. As root; CI runs it before test.
func TestFresh(ctx context.Context) error {
	return freshcheck.Run(ctx, os.Stdout, freshcheck.Options{Repo: "."})
}

// Env brings whole environments up and down.
type Env mg.Namespace

// StartAll starts every host of every role of ENV, waits for phone-home, checks ping and SSH, deploys, starts and tests each role's service.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL, BOOTED_BATCH, BOOTED_JUNIT, BOOTED_LOCK_WAIT.
func (Env) StartAll(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.EnvStartAll(ctx, env) })
}

// StartMin is env:startAll with the minimum number of hosts of each role.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL, BOOTED_BATCH, BOOTED_JUNIT, BOOTED_LOCK_WAIT.
func (Env) StartMin(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.EnvStartMin(ctx, env) })
}

// StartWorker (re)starts host HOST of ENV and its role's service.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL, BOOTED_LOCK_WAIT.
func (Env) StartWorker(ctx context.Context, env, host string) error {
	return run(func(r *targets.Runner) error { return r.EnvStartWorker(ctx, env, host) })
}

// Stop stops the services and then every host of ENV, load balancers first.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL, BOOTED_LOCK_WAIT.
func (Env) Stop(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.EnvStop(ctx, env) })
}

// Destroy powers off and deletes every host of ENV, stops its controller nginx and removes its bridge (local, qemu).
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Env) Destroy(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.EnvDestroy(ctx, env) })
}

// Status shows the hosts of ENV by role and state with the version and health of their service.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL.
func (Env) Status(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.EnvStatus(ctx, env) })
}

// Service deploys, starts, stops and tests services (services/SVC/service.yaml).
type Service mg.Namespace

// Deploy builds VERSION (git tag or commit) of SVC once and rolls it out to ENV (or ENV/ROLE) in batches out of the load balancer, rolling back a failed batch.
//
// Settings: BOOTED_BATCH (1, N, N%, all), BOOTED_RETRY=failed, BOOTED_PARALLEL, BOOTED_OUTPUT=json, BOOTED_LOCK_WAIT.
func (Service) Deploy(ctx context.Context, env, svc, version string) error {
	return run(func(r *targets.Runner) error { return r.ServiceDeploy(ctx, env, svc, version) })
}

// Start (re)starts SVC on every host of ENV (or ENV/ROLE) that runs it and waits for its health check.
//
// Settings: BOOTED_RETRY=failed, BOOTED_PARALLEL, BOOTED_OUTPUT=json, BOOTED_LOCK_WAIT.
func (Service) Start(ctx context.Context, env, svc string) error {
	return run(func(r *targets.Runner) error { return r.ServiceStart(ctx, env, svc) })
}

// Stop stops SVC on every host of ENV (or ENV/ROLE) that runs it.
//
// Settings: BOOTED_RETRY=failed, BOOTED_PARALLEL, BOOTED_OUTPUT=json, BOOTED_LOCK_WAIT.
func (Service) Stop(ctx context.Context, env, svc string) error {
	return run(func(r *targets.Runner) error { return r.ServiceStop(ctx, env, svc) })
}

// Rollback switches every host of ENV running SVC back to its previous release, one batch at a time.
//
// Settings: BOOTED_BATCH, BOOTED_PARALLEL, BOOTED_OUTPUT=json, BOOTED_LOCK_WAIT.
func (Service) Rollback(ctx context.Context, env, svc string) error {
	return run(func(r *targets.Runner) error { return r.ServiceRollback(ctx, env, svc) })
}

// Logs prints the last lines of SVC's log on every host of ENV (or ENV/ROLE), prefixed by host; BOOTED_FOLLOW=1 follows them until Ctrl-C.
//
// Settings: BOOTED_FOLLOW=1, BOOTED_LIMIT.
func (Service) Logs(ctx context.Context, env, svc string) error {
	return run(func(r *targets.Runner) error { return r.ServiceLogs(ctx, env, svc) })
}

// Test runs SVC's service.yaml checks against every host of ENV running it; non-zero exit on failure.
//
// Settings: BOOTED_JUNIT (JUnit XML file), BOOTED_RETRY=failed, BOOTED_PARALLEL, BOOTED_OUTPUT=json.
func (Service) Test(ctx context.Context, env, svc string) error {
	return run(func(r *targets.Runner) error { return r.ServiceTest(ctx, env, svc) })
}

// Hosts finds and checks the hosts of an environment.
type Hosts mg.Namespace

// List prints the inventory of ENV: name, role, state, address, host key.
//
// Settings: BOOTED_OUTPUT=json.
func (Hosts) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.HostsList(ctx, env) })
}

// Logged records the hosts that phoned home to ENV's boot log, waiting for hosts still booting (up to the boot timeout).
//
// Settings: BOOTED_OUTPUT=json, BOOTED_ACCEPT_NEW=1 (static hosts: pin an unknown key on first use), BOOTED_LOCK_WAIT.
func (Hosts) Logged(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.HostsLogged(ctx, env) })
}

// Filter pings every discovered host of ENV and logs in with SSH against its pinned key; passing hosts are ready.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL, BOOTED_LOCK_WAIT.
func (Hosts) Filter(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.HostsFilter(ctx, env) })
}

// Run runs shell command CMD on every host of ENV (or ENV/ROLE), output prefixed by host.
//
// Settings: BOOTED_PARALLEL (default 64), BOOTED_RETRY=failed, BOOTED_OUTPUT=json.
func (Hosts) Run(ctx context.Context, env, cmd string) error {
	return run(func(r *targets.Runner) error { return r.HostsRun(ctx, env, cmd) })
}

// Query lists the hosts of ENV that EXPR matches: name:, role:, pool:, class:, state:, provider:, connected: (globs), attr:KEY, attr:KEY=VALUE, joined by and, or, not and parentheses. Every target taking ENV/ROLE takes ENV/EXPR too.
//
// Settings: BOOTED_OUTPUT=json.
func (Hosts) Query(ctx context.Context, env, expr string) error {
	return run(func(r *targets.Runner) error { return r.HostsQuery(ctx, env, expr) })
}

// Pick lists N hosts that EXPR matches, each with a different value of attribute KEY (clusto's "4 unallocated servers, each in a different rack": hosts:pick local attr:status=unallocated 4 rack).
//
// Settings: BOOTED_OUTPUT=json.
func (Hosts) Pick(ctx context.Context, env, expr string, n int, key string) error {
	return run(func(r *targets.Runner) error { return r.HostsPick(ctx, env, expr, n, key) })
}

// Locate says where HOST is: provider, address, MAC, bridge or network and its port there (veth, tap, NIC), BMC, and the rack and u attributes when set.
//
// Settings: BOOTED_OUTPUT=json.
func (Hosts) Locate(ctx context.Context, env, host string) error {
	return run(func(r *targets.Runner) error { return r.HostsLocate(ctx, env, host) })
}

// Rebuild makes HOST again from nothing: out of the load balancers, deleted, built and booted with a new enrollment (a new host key pinned, the old one refused), its role's service deployed, back in.
//
// Settings: BOOTED_LOCK_WAIT.
func (Hosts) Rebuild(ctx context.Context, env, host string) error {
	return run(func(r *targets.Runner) error { return r.HostsRebuild(ctx, env, host) })
}

// Attr changes or shows HOST's attributes; SPEC is one quoted argument: "add KEY VALUE…", "set KEY VALUE…", "del KEY [VALUE…]" or "get [KEY]".
//
// Settings: BOOTED_OUTPUT=json, BOOTED_LOCK_WAIT.
func (Hosts) Attr(ctx context.Context, env, host, spec string) error {
	return run(func(r *targets.Runner) error { return r.HostsAttr(ctx, env, host, spec) })
}

// Pool adds hosts to POOL or removes them; SPEC is one quoted argument: "add HOST…" or "del HOST…".
//
// Settings: BOOTED_LOCK_WAIT.
func (Hosts) Pool(ctx context.Context, env, pool, spec string) error {
	return run(func(r *targets.Runner) error { return r.HostsPool(ctx, env, pool, spec) })
}

// Pools lists the pools of hosts.
type Pools mg.Namespace

// List prints the pools of ENV with their hosts.
//
// Settings: BOOTED_OUTPUT=json.
func (Pools) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.PoolsList(ctx, env) })
}

// Put copies local file SRC to DST on every host of ENV (or ENV/ROLE) over SFTP, skipping hosts that have that content already: SRC is hashed once, and a host where booted put it before is checked with one stat.
//
// Settings: BOOTED_LIMIT, BOOTED_PARALLEL, BOOTED_RETRY=failed, BOOTED_OUTPUT=json, BOOTED_VERIFY=1 (read each host's file even so).
func (Hosts) Put(ctx context.Context, env, src, dst string) error {
	return run(func(r *targets.Runner) error { return r.HostsPut(ctx, env, src, dst) })
}

// Get copies SRC from every host of ENV (or ENV/ROLE) to DIR/HOST/ over SFTP, skipping copies that have that content already.
//
// Settings: BOOTED_LIMIT, BOOTED_PARALLEL, BOOTED_RETRY=failed, BOOTED_OUTPUT=json.
func (Hosts) Get(ctx context.Context, env, src, dir string) error {
	return run(func(r *targets.Runner) error { return r.HostsGet(ctx, env, src, dir) })
}

// Ssh opens an interactive SSH session on host HOST of ENV with the deploy key, checking its host key against the one booted pinned.
func (Hosts) Ssh(ctx context.Context, env, host string) error {
	return run(func(r *targets.Runner) error { return r.HostsSSH(ctx, env, host) })
}

// Console prints the console log of host HOST of ENV (the serial console of a VM or an emulated machine).
func (Hosts) Console(ctx context.Context, env, host string) error {
	return run(func(r *targets.Runner) error { return r.HostsConsole(ctx, env, host) })
}

// Clear forgets the discovered hosts of ENV; hosts:logged then reads the live boot log again from its start.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Hosts) Clear(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.HostsClear(ctx, env) })
}

// Reset is hosts:clear, hosts:logged and hosts:filter in one: a hard reset of what booted knows of ENV's hosts.
//
// Settings: BOOTED_OUTPUT=json, BOOTED_PARALLEL, BOOTED_ACCEPT_NEW=1, BOOTED_LOCK_WAIT.
func (Hosts) Reset(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.HostsReset(ctx, env) })
}

// Image makes, starts, stops and deletes hosts.
type Image mg.Namespace

// Build makes host NAME of ENV (or several: NAME1,NAME2) without starting it.
//
// Settings: BOOTED_VBOXMANAGE, BOOTED_VBOX_TFTP (vbox), BOOTED_LOCK_WAIT.
func (Image) Build(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.ImageBuild(ctx, env, name) })
}

// Start boots host NAME of ENV (or several: NAME1,NAME2), building it first if needed.
//
// Settings: BOOTED_QEMU_APPEND (qemu), BOOTED_VBOXMANAGE, BOOTED_VBOX_TFTP (vbox), BOOTED_LOCK_WAIT.
func (Image) Start(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.ImageStart(ctx, env, name) })
}

// Stop powers off host NAME of ENV (or several: NAME1,NAME2); every process in it ends.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Image) Stop(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.ImageStop(ctx, env, name) })
}

// Clone makes host NAME of ENV a copy of host SRC with fresh MACs and its own name (vbox, qemu).
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Image) Clone(ctx context.Context, env, src, name string) error {
	return run(func(r *targets.Runner) error { return r.ImageClone(ctx, env, src, name) })
}

// Del deletes host NAME of ENV (or several: NAME1,NAME2) with its files; the inventory keeps it as terminated.
//
// Settings: BOOTED_FORCE=1 powers a running VM off first (without it, a running VM is refused), BOOTED_LOCK_WAIT.
func (Image) Del(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.ImageDel(ctx, env, name) })
}

// List lists the hosts the provider of ENV has made, powered on or off, with their inventory state.
//
// Settings: BOOTED_OUTPUT=json.
func (Image) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.ImageList(ctx, env) })
}

// Nginx runs the controller's nginx that hosts phone home to.
type Nginx mg.Namespace

// Restart starts a new boot log for ENV (the old one is kept with a timestamp suffix) and (re)starts the controller's nginx.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Nginx) Restart(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.NginxRestart(ctx, env) })
}

// Bench measures booted against its peers.
type Bench mg.Namespace

// Load sends RATE requests a second for DURATION (30s, say) to ENV's load balancer and prints requests, failures and p50/p95/p99.
//
// Settings: BOOTED_LOAD_PATH (the path requested, default /).
func (Bench) Load(ctx context.Context, env string, d time.Duration, rate int) error {
	return run(func(r *targets.Runner) error { return r.BenchLoad(ctx, env, d, rate) })
}

// Fanout makes N local hosts and times uname -r and a 10 MB copy on all of them with a plain Go loop, booted, parallel-ssh and ansible (medians, side by side).
//
// Settings: BOOTED_BENCH_RUNS (runs per figure, default 5), BOOTED_LOCK_WAIT.
func (Bench) Fanout(ctx context.Context, n int) error {
	return run(func(r *targets.Runner) error { return r.BenchFanout(ctx, n) })
}

// List records N hosts in a throw-away environment and times hosts:list, hosts:query and env:status of them beside ansible-inventory --list of the same hosts (medians, side by side; nothing starts).
//
// Settings: BOOTED_BENCH_RUNS (runs per figure, default 5).
func (Bench) List(ctx context.Context, n int) error {
	return run(func(r *targets.Runner) error { return r.BenchList(ctx, n) })
}

// Daily measures, on ENV (which it brings up first if needed), what every day costs: one call through go run mage.go against the compiled command, a no-op env:startAll, and the discovery latency (p50, p99), side by side.
//
// Settings: BOOTED_BENCH_RUNS (runs per figure, default 5), BOOTED_OUTPUT=json.
func (Bench) Daily(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.BenchDaily(ctx, env) })
}

// Conductors measures hosts:run on N hosts (2 to 10,000) in the target's own process against the same run split over sites with a conductor each (10 sites from 100 hosts, else 2; NATS JetStream): wall time, CPU seconds and peak RSS of the target and of the conductors, and the inventory's size, side by side. The hosts are one sshd of the bench's on 127.0.0.1; all it starts is stopped and removed after.
//
// Settings: BOOTED_BENCH_RUNS (timed runs per figure, default 5), BOOTED_OUTPUT=json.
func (Bench) Conductors(ctx context.Context, n int) error {
	return run(func(r *targets.Runner) error { return r.BenchConductors(ctx, n) })
}

// Conductor takes a site's work from NATS JetStream (the env file's nats and sites).
type Conductor mg.Namespace

// Run takes the jobs of SITE of ENV (from the env file's NATS cluster) until Ctrl-C or SIGTERM, doing each with the functions the targets use in-process.
// A site with a network of its own (sites.SITE.subnet): it runs in that network (entering it when started outside), makes the site's hosts and passes on their callbacks.
//
// Settings: BOOTED_PARALLEL, BOOTED_NATS_CREDENTIALS (this machine's credentials file instead of the env file's).
func (Conductor) Run(ctx context.Context, env, site string) error {
	return run(func(r *targets.Runner) error { return r.ConductorRun(ctx, env, site) })
}

// Nats makes the trust of an environment's NATS cluster.
type Nats mg.Namespace

// Config makes, under inventory/ENV/nats (0600), a CA and the servers' TLS certificate, an nkey for the controller and one per site, and each server's configuration (a site's conductors may take only its jobs); it prints how to start the servers. Keys already there are kept.
func (Nats) Config(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.NATSConfig(ctx, env) })
}

// Conductors lists the conductors of an environment.
type Conductors mg.Namespace

// List shows the conductors beating for ENV: site, name, since, last beat, jobs done.
//
// Settings: BOOTED_OUTPUT=json.
func (Conductors) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.ConductorsList(ctx, env) })
}

// Monitor keeps environments inside their SLA.
type Monitor mg.Namespace

// Run runs the monitor daemon for ENV until Ctrl-C or SIGTERM: it scales workers to hold the env file's SLA and replaces dead ones; SIGHUP reloads the env file.
//
// Settings: BOOTED_DRY_RUN=1 (log what it would do, do nothing), BOOTED_PARALLEL.
func (Monitor) Run(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.MonitorRun(ctx, env) })
}

// Status prints the monitor's last measurements and decision for ENV, and the recent events.
//
// Settings: BOOTED_OUTPUT=json.
func (Monitor) Status(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.MonitorStatus(ctx, env) })
}

// Power switches bare-metal nodes through their BMCs (IPMI).
type Power mg.Namespace

// On powers host NODE of ENV on: a bare-metal node through its BMC; a local host or VM through its provider (it boots and enrolls again, as image:start).
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Power) On(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.Power(ctx, "on", env, node) })
}

// Off powers host NODE of ENV off: a bare-metal node through its BMC; a local host or VM through its provider (as image:stop).
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Power) Off(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.Power(ctx, "off", env, node) })
}

// Cycle power-cycles host NODE of ENV: a bare-metal node through its BMC (an installed node boots its disk); a local host or VM off then on.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Power) Cycle(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.Power(ctx, "cycle", env, node) })
}

// Status prints the power of host NODE of ENV, asked of its BMC (bare metal) or its provider.
func (Power) Status(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.Power(ctx, "status", env, node) })
}

// Node manages the bare-metal nodes of an environment.
type Node mg.Namespace

// Secret sets node NODE's BMC password from standard input (one line) into inventory/ENV/bmc/NODE, mode 0600.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Node) Secret(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.NodeSecret(ctx, env, node, os.Stdin) })
}

// List lists the nodes of ENV: NICs, BMC (never its password), power as its BMC says, installed or not, inventory state.
//
// Settings: BOOTED_OUTPUT=json.
func (Node) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.NodeList(ctx, env) })
}

// Create records node NODE of ENV (listed in its env file) in the inventory, after checking its BMC answers.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Node) Create(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.NodeCreate(ctx, env, node) })
}

// Del powers node NODE of ENV off, forgets its install and osimage, and marks it terminated.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Node) Del(ctx context.Context, env, node string) error {
	return run(func(r *targets.Runner) error { return r.NodeDel(ctx, env, node) })
}

// Deploy installs node NODE of ENV from osimage OSIMAGE (netboot once, over IPMI) and follows it to ready.
//
// Settings: BOOTED_LOCK_WAIT, BOOTED_OUTPUT=json.
func (Node) Deploy(ctx context.Context, env, node, osimage string) error {
	return run(func(r *targets.Runner) error { return r.NodeDeploy(ctx, env, node, osimage) })
}

// Net manages the networks booted serves to bare-metal nodes.
type Net mg.Namespace

// Create makes network NAME of ENV: its bridge (if booted makes it) and its dnsmasq (DHCP with a lease per node, iPXE).
//
// Settings: BOOTED_LOCK_WAIT, BOOTED_OUTPUT=json.
func (Net) Create(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.NetCreate(ctx, env, name) })
}

// Del stops network NAME's dnsmasq and removes its bridge (refused while a node on it is in use).
//
// Settings: BOOTED_LOCK_WAIT, BOOTED_OUTPUT=json.
func (Net) Del(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.NetDel(ctx, env, name) })
}

// List lists the networks of ENV with their DHCP server (dnsmasq).
//
// Settings: BOOTED_OUTPUT=json.
func (Net) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.NetList(ctx, env) })
}

// Osimage manages the operating system images bare-metal nodes install from.
type Osimage mg.Namespace

// Import imports installer ISO into ENV (RHEL family, Debian, Ubuntu: kernel, initrd and tree under inventory/ENV/osimages), named distro-version-arch, and serves it.
//
// Settings: BOOTED_LOCK_WAIT, BOOTED_OUTPUT=json.
func (Osimage) Import(ctx context.Context, env, iso string) error {
	return run(func(r *targets.Runner) error { return r.OSImageImport(ctx, env, iso, "") })
}

// ImportAs is osimage:import naming the osimage NAME.
//
// Settings: BOOTED_LOCK_WAIT, BOOTED_OUTPUT=json.
func (Osimage) ImportAs(ctx context.Context, env, iso, name string) error {
	return run(func(r *targets.Runner) error { return r.OSImageImport(ctx, env, iso, name) })
}

// List lists the osimages of ENV (booted's own Debian image and the imported ones) with the nodes that install from each.
//
// Settings: BOOTED_OUTPUT=json.
func (Osimage) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.OSImageList(ctx, env) })
}

// Del removes imported osimage NAME of ENV (refused while a node installs from it).
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Osimage) Del(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.OSImageDel(ctx, env, name) })
}

// API serves the EC2-compatible API.
type API mg.Namespace

// Serve serves ENV's EC2 Query API (RunInstances, DescribeInstances, TerminateInstances, key pairs; Signature Version 4) on BOOTED_API_LISTEN until Ctrl-C.
//
// Settings: BOOTED_API_LISTEN (default 127.0.0.1:8773).
func (API) Serve(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.APIServe(ctx, env) })
}

// Instances are hosts users ask for, as EC2 instances (the same as the EC2 API's actions).
type Instances mg.Namespace

// Run runs COUNT instances of IMAGE (ami-local on local hosts) for BOOTED_USER, waits until they run and are reachable, and lists them.
//
// Settings: BOOTED_USER, BOOTED_INSTANCE_TYPE, BOOTED_KEY_NAME, BOOTED_USER_DATA (a file), BOOTED_TAGS (KEY=VALUE,…), BOOTED_OUTPUT=json.
func (Instances) Run(ctx context.Context, env, image string, count int) error {
	return run(func(r *targets.Runner) error { return r.InstancesRun(ctx, env, image, count) })
}

// Describe lists BOOTED_USER's instances of ENV: EC2 state, type, image, key pair, address, tags, reason.
//
// Settings: BOOTED_USER, BOOTED_OUTPUT=json.
func (Instances) Describe(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.InstancesDescribe(ctx, env) })
}

// Terminate terminates BOOTED_USER's instances IDS (comma-separated): their hosts are deleted.
//
// Settings: BOOTED_USER, BOOTED_LOCK_WAIT.
func (Instances) Terminate(ctx context.Context, env, ids string) error {
	return run(func(r *targets.Runner) error { return r.InstancesTerminate(ctx, env, ids) })
}

// Stop powers BOOTED_USER's instances IDS (comma-separated) off.
//
// Settings: BOOTED_USER, BOOTED_LOCK_WAIT.
func (Instances) Stop(ctx context.Context, env, ids string) error {
	return run(func(r *targets.Runner) error { return r.InstancesStop(ctx, env, ids) })
}

// Start starts BOOTED_USER's stopped instances IDS (comma-separated) and waits until they run.
//
// Settings: BOOTED_USER, BOOTED_LOCK_WAIT.
func (Instances) Start(ctx context.Context, env, ids string) error {
	return run(func(r *targets.Runner) error { return r.InstancesStart(ctx, env, ids) })
}

// Reboot restarts BOOTED_USER's instances IDS (comma-separated) and waits until they run.
//
// Settings: BOOTED_USER, BOOTED_LOCK_WAIT.
func (Instances) Reboot(ctx context.Context, env, ids string) error {
	return run(func(r *targets.Runner) error { return r.InstancesReboot(ctx, env, ids) })
}

// Console prints the console of BOOTED_USER's instance ID.
//
// Settings: BOOTED_USER.
func (Instances) Console(ctx context.Context, env, id string) error {
	return run(func(r *targets.Runner) error { return r.InstancesConsole(ctx, env, id) })
}

// Keypair manages the SSH key pairs instances are launched with.
type Keypair mg.Namespace

// Create makes key pair NAME for BOOTED_USER and writes its private key to NAME.pem here (0600, the only copy; booted keeps the public key).
//
// Settings: BOOTED_USER.
func (Keypair) Create(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.KeypairCreate(ctx, env, name) })
}

// Import imports the public key in FILE as key pair NAME of BOOTED_USER.
//
// Settings: BOOTED_USER.
func (Keypair) Import(ctx context.Context, env, name, file string) error {
	return run(func(r *targets.Runner) error { return r.KeypairImport(ctx, env, name, file) })
}

// List lists BOOTED_USER's key pairs with their fingerprints.
//
// Settings: BOOTED_USER, BOOTED_OUTPUT=json.
func (Keypair) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.KeypairList(ctx, env) })
}

// Del deletes key pair NAME of BOOTED_USER.
//
// Settings: BOOTED_USER.
func (Keypair) Del(ctx context.Context, env, name string) error {
	return run(func(r *targets.Runner) error { return r.KeypairDel(ctx, env, name) })
}

// Systems are the bare-metal nodes instances run on, and who they are reserved for.
type Systems mg.Namespace

// List lists the bare-metal nodes of ENV: who each is reserved for, its state, the instance on it and its owner.
//
// Settings: BOOTED_OUTPUT=json.
func (Systems) List(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.SystemsList(ctx, env) })
}

// Reserve reserves bare-metal nodes NODES (comma-separated) of ENV for USER: only USER's instances run on them.
//
// Settings: BOOTED_LOCK_WAIT.
func (Systems) Reserve(ctx context.Context, env, nodes, user string) error {
	return run(func(r *targets.Runner) error { return r.SystemsReserve(ctx, env, nodes, user) })
}

// Release gives bare-metal nodes NODES (comma-separated) of ENV back to everyone.
//
// Settings: BOOTED_LOCK_WAIT.
func (Systems) Release(ctx context.Context, env, nodes string) error {
	return run(func(r *targets.Runner) error { return r.SystemsRelease(ctx, env, nodes) })
}

// Creds makes the users of the EC2 API.
type Creds mg.Namespace

// Create makes an access key for USER of ENV's EC2 API and the rc file (inventory/ENV/creds/USER.rc) that points the AWS CLI and boto3 at it.
//
// Settings: BOOTED_API_LISTEN (the endpoint the rc file names), BOOTED_LOCK_WAIT.
func (Creds) Create(ctx context.Context, env, user string) error {
	return run(func(r *targets.Runner) error { return r.CredsCreate(ctx, env, user) })
}

// Metal makes emulated bare-metal machines to try a baremetal env on this machine.
type Metal mg.Namespace

// Lab makes, for every node of ENV, a qemu machine with an empty disk that netboots and an ipmi_sim BMC on 127.0.0.1 that powers it (needs root).
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Metal) Lab(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.MetalLab(ctx, env) })
}

// LabDown stops (by PID) and removes the emulated machines and BMCs of ENV.
//
// Settings: BOOTED_LOCK_WAIT (it holds the environment while it runs).
func (Metal) LabDown(ctx context.Context, env string) error {
	return run(func(r *targets.Runner) error { return r.MetalLabDown(ctx, env) })
}

// Install compiles every target into one command, bin/booted, and writes `booted` (which runs it for this project from any directory) to BOOTED_BIN_DIR: milliseconds a call instead of go run mage.go's build. Install again after changing the code.
//
// Settings: BOOTED_BIN_DIR (default /usr/local/bin as root, else ~/.local/bin).
func Install(ctx context.Context) error {
	return run(func(r *targets.Runner) error { return r.Install(ctx) })
}
