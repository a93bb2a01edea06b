// Package bmc powers machines and picks their boot device through their
// baseboard management controller, over IPMI (ipmitool, lanplus with
// cipher suite 3: the suite ipmi_sim and most BMCs take without the
// cipher-suite discovery that costs ipmitool 10 s against ipmi_sim). The
// password goes to ipmitool in its environment (IPMI_PASSWORD), never on a
// command line. Every call has a timeout, and every error names the node
// and its BMC's address.
package bmc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"booted/internal/bridge"
)

// Needs are the commands this package runs, and their Debian packages.
var Needs = map[string]string{"ipmitool": "ipmitool"}

// BMC is one machine's BMC.
type BMC struct {
	// Node names the machine, for errors.
	Node string
	Addr string
	Port int
	User string
	// Password is the BMC user's password (from inventory/ENV/bmc/NODE).
	Password string
	// Timeout bounds one call (default 10s).
	Timeout time.Duration
	// Netns is the network namespace the BMC is reached from (a site's
	// router, where its management network is); "": this machine's.
	Netns string
}

// ErrUnreachable is wrapped by errors of a BMC that does not answer.
var ErrUnreachable = errors.New("the BMC does not answer")

// Power states.
const (
	On  = "on"
	Off = "off"
)

func (b BMC) where() string { return b.Addr + ":" + strconv.Itoa(b.Port) }

// run runs one ipmitool command against the BMC.
func (b BMC) run(ctx context.Context, args ...string) (string, error) {
	timeout := b.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	full := append([]string{"-I", "lanplus", "-C", "3", "-H", b.Addr, "-p", strconv.Itoa(b.Port), "-U", b.User, "-E", "-N", "2", "-R", "2"}, args...)
	cmd := bridge.CommandIn(ctx, b.Netns, "ipmitool", full...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+b.Password)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err == nil {
		return strings.TrimSpace(out.String()), nil
	}
	detail := strings.TrimSpace(errb.String())
	if ctx.Err() != nil {
		detail = fmt.Sprintf("no answer within %v", timeout)
	} else if detail == "" {
		detail = err.Error()
	}
	if ctx.Err() != nil || strings.Contains(detail, "Unable to establish") || strings.Contains(detail, "no response") || strings.Contains(detail, "Connection refused") {
		return "", fmt.Errorf("node %s: BMC %s: %w (ipmitool %s: %s)", b.Node, b.where(), ErrUnreachable, strings.Join(args, " "), oneLine(detail))
	}
	return "", fmt.Errorf("node %s: BMC %s: ipmitool %s: %s", b.Node, b.where(), strings.Join(args, " "), oneLine(detail))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Status returns On or Off.
func (b BMC) Status(ctx context.Context) (string, error) {
	out, err := b.run(ctx, "chassis", "power", "status")
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasSuffix(out, " on"):
		return On, nil
	case strings.HasSuffix(out, " off"):
		return Off, nil
	}
	return "", fmt.Errorf("node %s: BMC %s: power status %q", b.Node, b.where(), out)
}

// PowerOn powers the machine on.
func (b BMC) PowerOn(ctx context.Context) error {
	_, err := b.run(ctx, "chassis", "power", "on")
	return err
}

// PowerOff powers the machine off (hard).
func (b BMC) PowerOff(ctx context.Context) error {
	_, err := b.run(ctx, "chassis", "power", "off")
	return err
}

// Cycle powers the machine off and on again; a machine that is off is
// powered on.
func (b BMC) Cycle(ctx context.Context) error {
	st, err := b.Status(ctx)
	if err != nil {
		return err
	}
	if st == Off {
		return b.PowerOn(ctx)
	}
	_, err = b.run(ctx, "chassis", "power", "cycle")
	return err
}

// BootDev sets the device the machine boots from next: "pxe" or "disk",
// persistently.
func (b BMC) BootDev(ctx context.Context, dev string) error {
	_, err := b.run(ctx, "chassis", "bootdev", dev, "options=persistent")
	return err
}
