package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"booted/internal/discovery"
	"booted/internal/files"
	"booted/internal/inventory"
	"booted/internal/provider"
)

// AwaitPhoneHome records the hosts whose keys their providers know (Pin,
// all of them), then, when some provider's hosts phone home, catches up
// with the boot log through the discoverer newDiscoverer makes and waits
// for the booting hosts: each up to the boot timeout, or each stage's
// where its provider has stages (a late stage provisions it again while
// it has retries). A host that installed itself boots its disk next.
func (h *Hosts) AwaitPhoneHome(ctx context.Context, newDiscoverer func() *discovery.Discoverer) error {
	for _, p := range h.Provs.All() {
		if k, known := p.(provider.KnownKeys); known {
			if err := h.Pin(ctx, k); err != nil {
				return err
			}
		}
	}
	if !h.Provs.AnyPhonesHome() {
		return nil
	}
	d := newDiscoverer()
	installed := func(names []string) {
		for _, n := range names {
			if nb, ok := h.Provs.Of(n).(provider.Netboot); ok {
				if err := nb.Installed(ctx, n); err != nil {
					fmt.Fprintf(h.Log, "host %s: %v\n", n, err)
				}
			}
		}
	}
	d.OnInstalled = installed
	d.Waiting = h.bootProgress()
	d.OnBooted = func(names []string) {
		installed(names)
		for _, n := range names {
			fmt.Fprintf(h.Log, "host %s: phoned home\n", n)
		}
		for _, n := range names { // a deploy's last stage: it phoned home from its disk (a later reboot is none)
			var last string
			h.Store.Get(ctx, h.Env.Name, "stage/"+n, &last)
			if _, ok := h.Provs.Of(n).(provider.Stages); ok && last != "" && !strings.HasPrefix(last, "first-boot@") {
				h.recordStage(ctx, n, "first-boot", time.Now())
			}
		}
	}
	timeout := h.Env.Timeouts.Boot.D()
	late := func(host inventory.Host) string {
		if st, ok := h.Provs.Of(host.Name).(provider.Stages); ok {
			return h.lateStage(ctx, st, host)
		}
		if time.Since(host.Since) < timeout {
			return ""
		}
		return fmt.Sprintf("no phone-home within %v of boot", timeout) + h.consoleTail(host.Name)
	}
	return d.Await(ctx, late)
}

// bootProgress says, while hosts boot, which ones are still awaited and
// for how long (after 2 s, then every 10 s): a VM or a node takes
// minutes, and the screen stayed silent.
func (h *Hosts) bootProgress() func([]inventory.Host) {
	start := time.Now()
	next := start.Add(2 * time.Second)
	return func(hosts []inventory.Host) {
		if time.Now().Before(next) {
			return
		}
		next = time.Now().Add(10 * time.Second)
		var parts []string
		for i, host := range hosts {
			if i == 5 {
				parts = append(parts, fmt.Sprintf("and %d more", len(hosts)-5))
				break
			}
			parts = append(parts, fmt.Sprintf("%s %s", host.Name, time.Since(host.Since).Round(time.Second)))
		}
		fmt.Fprintf(h.Log, "%s: %d booting, waiting for them to phone home: %s (boot timeout %v)\n", h.Env.Name, len(hosts), strings.Join(parts, ", "), h.Env.Timeouts.Boot.D())
	}
}

// lateStage says why host, booting through stages, is failed: a stage it
// did not reach in time, once its retries are spent (each retry
// provisions it again).
func (h *Hosts) lateStage(ctx context.Context, st provider.Stages, host inventory.Host) string {
	reached, at, waiting, deadline := st.Stage(ctx, host.Name, host.Since)
	h.recordStage(ctx, host.Name, reached, at)
	if time.Now().Before(deadline) {
		return ""
	}
	why := fmt.Sprintf("stage %s not reached by %s", waiting, deadline.UTC().Format(time.RFC3339))
	if reached != "" {
		why += fmt.Sprintf(" (%s at %s)", reached, at.UTC().Format(time.RFC3339))
	}
	var tries int
	h.Store.Get(ctx, h.Env.Name, "retries/"+host.Name, &tries)
	if tries < st.Retries() {
		h.Store.Update(ctx, func(tx *inventory.Tx) error { return tx.Put(h.Env.Name, "retries/"+host.Name, tries+1) })
		fmt.Fprintf(h.Log, "host %s: %s; provisioning it again (try %d of %d)\n", host.Name, why, tries+2, st.Retries()+1)
		h.Store.Advance(ctx, h.Env.Name, host.Name, inventory.Failed, why+"; retrying")
		if err := h.Start(ctx, host.Name); err != nil {
			return why + "; the retry failed: " + err.Error()
		}
		return ""
	}
	return why + h.consoleTail(host.Name)
}

// recordStage records a stage a host reached, once.
func (h *Hosts) recordStage(ctx context.Context, name, stage string, at time.Time) {
	if stage == "" || stage == "installed" { // the installer's report is recorded as it arrives
		return
	}
	key := "stage/" + name
	var last string
	h.Store.Get(ctx, h.Env.Name, key, &last)
	mark := stage + "@" + at.UTC().Format(time.RFC3339Nano)
	if last == mark {
		return
	}
	h.Store.Update(ctx, func(tx *inventory.Tx) error {
		if err := tx.Put(h.Env.Name, key, mark); err != nil {
			return err
		}
		return tx.Record(inventory.Event{Env: h.Env.Name, Host: name, Kind: "stage", Detail: fmt.Sprintf("%s at %s", stage, at.UTC().Format(time.RFC3339Nano))})
	})
}

// consoleTail is "; see FILE; console: its last lines", where the
// provider keeps a console log for the host.
func (h *Hosts) consoleTail(name string) string {
	c, ok := h.Provs.Of(name).(provider.Console)
	if !ok {
		return ""
	}
	b, err := files.Tail(c.ConsoleLog(name), 64<<10)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	return fmt.Sprintf("; see %s; console: %s", c.ConsoleLog(name), provider.ConsoleTail(b, 5))
}

// ConsoleMax is how large a host's console log grows before CapConsoles
// cuts it to its newest half.
const ConsoleMax = 8 << 20

// CapConsoles keeps the console log of each host whose provider has one
// under ConsoleMax (files.Cap, in place, never through a link): what a
// host prints must not fill the controller's disk. It returns the errors
// of the hosts it could not cap, each naming its host.
func (h *Hosts) CapConsoles(ctx context.Context) error {
	hosts, err := h.Store.Hosts(ctx, h.Env.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, host := range hosts {
		c, ok := h.Provs.Of(host.Name).(provider.Console)
		if !ok || c.ConsoleLog(host.Name) == "" {
			continue
		}
		if _, err := files.Cap(c.ConsoleLog(host.Name), ConsoleMax); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("host %s: console log: %w", host.Name, err))
		}
	}
	return errors.Join(errs...)
}
