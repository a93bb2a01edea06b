// Package liveness tells whether hosts are up: an ICMP echo (pro-bing, raw
// sockets, so root or CAP_NET_RAW is needed); the SSH login checked against
// the host's pinned key is remote.Pool's Login, which keeps the connection.
package liveness

import (
	"context"
	"fmt"
	"time"

	probing "github.com/prometheus-community/pro-bing"

	"booted/internal/fanout"
	"booted/internal/inventory"
)

// Ping sends count echo requests to each address, at most parallel
// addresses at once (each pinger holds a raw socket), and returns, for
// each, nil if at least one reply came back within timeout.
func Ping(ctx context.Context, addrs []string, count int, timeout time.Duration, parallel int) map[string]error {
	errs := fanout.Map(ctx, addrs, parallel, func(ctx context.Context, a string) error { _, err := ping(ctx, a, count, timeout); return err })
	out := make(map[string]error, len(addrs))
	for i, a := range addrs {
		out[a] = errs[i]
	}
	return out
}

// ping sends up to count echo requests to addr, 100 ms apart, and stops at
// the first reply (a live host answers in a millisecond; waiting for all
// the replies made every check 200 ms long). It returns how many it sent.
func ping(ctx context.Context, addr string, count int, timeout time.Duration) (int, error) {
	p, err := probing.NewPinger(addr)
	if err != nil {
		return 0, err
	}
	p.SetPrivileged(true)
	p.SetLogger(probing.NoopLogger{})
	p.Count, p.Interval, p.Timeout = count, 100*time.Millisecond, timeout
	p.OnRecv = func(*probing.Packet) { p.Stop() }
	if err := p.RunWithContext(ctx); err != nil {
		return 0, fmt.Errorf("ping %s: %w (booted pings with raw sockets: run as root)", addr, err)
	}
	st := p.Statistics()
	if st.PacketsRecv == 0 {
		return st.PacketsSent, fmt.Errorf("no reply to ping within %v", timeout)
	}
	return st.PacketsSent, nil
}

// Checked are the states in which a host is expected to be up, and so is
// checked.
var Checked = map[inventory.State]bool{inventory.Booted: true, inventory.Ready: true, inventory.Serving: true, inventory.Failed: true}

// ToCheck returns the hosts to check: in a checked state, with an address
// and a pinned key.
func ToCheck(hosts []inventory.Host) []inventory.Host {
	var out []inventory.Host
	for _, h := range hosts {
		if Checked[h.State] && h.Addr != "" && h.HostKey != "" && h.Damaged == "" {
			out = append(out, h)
		}
	}
	return out
}

// Record moves each checked host by its result (results[i] for hosts[i]):
// a host that answered becomes ready (from booted or failed), one that did
// not becomes failed with the reason; a host whose state changed since it
// was read is left alone. It reports whether a serving host was lost (the
// load balancers must follow).
func Record(ctx context.Context, store *inventory.Store, env string, hosts []inventory.Host, results []error) (lost bool, err error) {
	err = store.Update(ctx, func(tx *inventory.Tx) error {
		lost = false
		for i, h := range hosts {
			cur, err := tx.Host(env, h.Name)
			if err != nil || cur.State != h.State {
				continue // it moved on meanwhile
			}
			switch {
			case results[i] != nil:
				lost = lost || h.State == inventory.Serving
				err = tx.Advance(env, h.Name, inventory.Failed, "liveness: "+results[i].Error())
			case h.State == inventory.Booted || h.State == inventory.Failed:
				err = tx.Advance(env, h.Name, inventory.Ready, "")
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return lost, err
}
