// Package provider defines what booted needs from a way of making hosts
// (local namespaces, qemu or VirtualBox VMs, existing machines): the small
// Provider interface every one implements, and one small interface per
// capability only some have (power, delete, clone, console, known keys,
// netboot, a network to prepare). Callers ask for a capability with a type
// assertion; a provider that lacks one says so by not implementing it.
//
// Each implementation lives in a subpackage that decodes and validates its
// own section of the env file and owns its files under inventory/ENV; the
// registry (provider/registry) maps provider types to them, and every one
// passes the conformance suite in provider/providertest.
package provider

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"booted/internal/printable"

	"golang.org/x/crypto/ssh"
)

// Spec is what a provider needs to make one host.
type Spec struct {
	Name string
	Role string
	// PhoneHome is the host's rendered phone-home script; the host runs it
	// at the end of its install or, for light hosts, at every boot.
	PhoneHome []byte
	// Token is the enrollment token the phone-home script carries, for
	// providers that hand a host its identity some other way (a clone
	// asking the controller who it is).
	Token string
	// AuthorizedKey is the deploy public key, in authorized_keys format.
	AuthorizedKey []byte
	// Size is what an instance asked for (zero: the provider's settings);
	// VM providers give it to the machine.
	Size Size
	// Instance: the host is an instance (EC2-like); a provider whose
	// image has cloud-init turns it on, to run the user data from the
	// metadata service.
	Instance bool
}

// Size is a machine's CPUs, memory and disk.
type Size struct{ CPUs, MemoryMB, DiskGB int }

// Instance is a host as the provider sees it.
type Instance struct {
	Name string `json:"name"`
	// ID is the provider's own name for it (namespace, VM name, address).
	ID    string `json:"id"`
	Addr  string `json:"ip"`
	MAC   string `json:"mac"`
	State State  `json:"state"`
}

// State is whether an instance runs.
type State string

// Instance states.
const (
	Running State = "running"
	Off     State = "stopped"
)

// Errors providers return.
var (
	// ErrNoInstance is returned for a host the provider has not made.
	ErrNoInstance = errors.New("no such instance")
	// ErrRunning is returned by Delete for a host that is running, where
	// the provider refuses to delete one without Options.Force.
	ErrRunning = errors.New("it is running: stop it first, or set BOOTED_FORCE=1 to power it off")
)

// Provider makes and starts hosts. Every method is idempotent: building
// what exists or starting what runs does nothing and succeeds.
type Provider interface {
	// Build makes the host (disk, network identity) without starting it.
	Build(ctx context.Context, s Spec) (Instance, error)
	// Start boots the host, building it first if needed.
	Start(ctx context.Context, s Spec) (Instance, error)
	// List returns every host of the environment the provider has made.
	List(ctx context.Context) ([]Instance, error)
}

// Power is implemented by providers that can power a host off (and on
// again, with Start).
type Power interface {
	// Stop powers the host off; every process in it ends. Stopping a
	// stopped host succeeds; one never built gives ErrNoInstance.
	Stop(ctx context.Context, name string) error
}

// Deleter is implemented by providers that own their hosts and can remove
// them.
type Deleter interface {
	// Delete removes all that Build made; deleting what is gone succeeds.
	// Where powering a host off loses work (a VM), a running one is
	// refused with ErrRunning.
	Delete(ctx context.Context, name string) error
}

// Cloner is implemented by providers that can copy a host.
type Cloner interface {
	// Clone makes host s.Name a copy of host src with a fresh MAC and
	// address and its own name.
	Clone(ctx context.Context, src string, s Spec) (Instance, error)
}

// Location is where a host is attached (clusto's locate): the bridge or
// network it is on, its port there (a veth or tap), its BMC.
type Location struct {
	Bridge  string `json:"bridge,omitempty"`
	Port    string `json:"port,omitempty"`
	Network string `json:"network,omitempty"`
	BMC     string `json:"bmc,omitempty"`
}

// Locator is implemented by providers that know where their hosts are
// attached.
type Locator interface {
	Locate(name string) (Location, error)
}

// Console is implemented by providers that keep what a host prints while
// it boots (a VM's serial console, a light host's boot log).
type Console interface {
	// ConsoleLog returns the path of host name's console log.
	ConsoleLog(name string) string
}

// Known is a host whose key is known beforehand, and that key (nil when
// unknown).
type Known struct {
	Name, Addr string
	Port       int
	Key        ssh.PublicKey
}

// KnownKeys is implemented by providers whose hosts do not phone home
// (machines that already exist): their keys come from a known_hosts file.
type KnownKeys interface {
	// Known returns every host with its key from the file.
	Known(ctx context.Context) ([]Known, error)
	// KnownHostsFile is the file the keys come from.
	KnownHostsFile() string
}

// Netboot is implemented by providers whose hosts install themselves over
// the network once, then boot from their disk.
type Netboot interface {
	// Installed switches host name to booting from its disk: called once
	// it has phoned home from its install.
	Installed(ctx context.Context, name string) error
}

// Preparer is implemented by providers that set up a network the
// controller's nginx listens on (a bridge) before any host exists.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// Teardowner is implemented by providers that own more than their hosts
// (a bridge) and remove it all when the environment is destroyed.
type Teardowner interface {
	Teardown(ctx context.Context) error
}

// Switch is implemented by providers that switch a host's power directly
// (through its BMC): the power:on/off/cycle/status targets.
type Switch interface {
	PowerOn(ctx context.Context, name string) error
	PowerOff(ctx context.Context, name string) error
	PowerCycle(ctx context.Context, name string) error
	// PowerStatus returns "on" or "off".
	PowerStatus(ctx context.Context, name string) (string, error)
}

// Stages is implemented by providers whose hosts go through stages while
// they boot (bare metal: powered on, DHCP lease, installer fetched,
// installed, then the phone-home of the installed system), each with its
// own timeout.
type Stages interface {
	// Stage returns the last stage host name reached since it began to
	// boot at since (and when), and the stage it waits for now with the
	// time it must be reached by.
	Stage(ctx context.Context, name string, since time.Time) (reached string, at time.Time, waiting string, deadline time.Time)
	// Retries is how many times a host late at a stage is provisioned
	// again before it is failed.
	Retries() int
}

// Options is what a provider gets from outside its env file section.
type Options struct {
	// Dir is the environment's state directory (inventory/ENV); each
	// provider keeps its files in a directory of its own under it.
	Dir string
	// Root is the project directory (kickstart templates, the env files).
	Root string
	// Log receives progress (image builds, package installs).
	Log io.Writer
	// Install makes sure commands are there (command → Debian package),
	// installing the missing ones' packages.
	Install func(ctx context.Context, need map[string]string) error
	// Served is the directory the controller serves at ServedURL
	// (kickstarts, clone identities).
	Served, ServedURL string
	// FailedURL is where a host reports a failed install.
	FailedURL string
	// BaseURL is the controller's nginx (http://ADDRESS:PORT), which also
	// serves bare-metal nodes their boot (/metal/).
	BaseURL string
	// Ports are the TCP ports the hosts' services listen on (a kickstart
	// opens them in the firewall).
	Ports []int
	// VBoxManage and VBoxTFTP override the vbox provider's command and
	// TFTP directory (BOOTED_VBOXMANAGE, BOOTED_VBOX_TFTP).
	VBoxManage, VBoxTFTP string
	// QemuAppend is added to qemu VMs' kernel command line
	// (BOOTED_QEMU_APPEND).
	QemuAppend string
}

// Logger returns o.Log, or a writer that discards.
func (o Options) Logger() io.Writer {
	if o.Log == nil {
		return io.Discard
	}
	return o.Log
}

// DeleteAll deletes every host p lists, going on past failures.
func DeleteAll(ctx context.Context, p interface {
	Provider
	Deleter
}) error {
	insts, err := p.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range insts {
		errs = append(errs, p.Delete(ctx, in.Name))
	}
	return errors.Join(errs...)
}

// ConsoleTail returns the last n non-empty lines of a console log, as one
// line joined by " | ", without terminal escapes.
func ConsoleTail(b []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(printable.String(strings.ReplaceAll(l, "\r", ""), false))
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
