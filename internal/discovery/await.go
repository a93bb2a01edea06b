package discovery

import (
	"context"
	"fmt"
	"time"

	"booted/internal/inventory"
)

// Await catches up with the boot log, then waits for the hosts that are
// booting: each either phones home or, once timeout has passed since it
// started booting, is failed with "no phone-home within TIMEOUT of boot"
// and what more(name) adds (its console's last lines). OnBooted is told of
// the hosts that phoned home meanwhile.
func (d *Discoverer) Await(ctx context.Context, timeout time.Duration, more func(name string) string) error {
	for {
		if err := d.CatchUp(ctx); err != nil {
			return err
		}
		hosts, err := d.Store.Hosts(ctx, d.Env)
		if err != nil {
			return err
		}
		waiting := 0
		for _, h := range hosts {
			if h.State != inventory.Booting {
				continue
			}
			if time.Since(h.Since) < timeout {
				waiting++
				continue
			}
			reason := fmt.Sprintf("no phone-home within %v of boot", timeout)
			if more != nil {
				reason += more(h.Name)
			}
			err := d.Store.Update(ctx, func(tx *inventory.Tx) error {
				cur, err := tx.Host(d.Env, h.Name)
				if err != nil || cur.State != inventory.Booting || cur.Since != h.Since {
					return err // it moved on meanwhile
				}
				return tx.Advance(d.Env, h.Name, inventory.Failed, reason)
			})
			if err != nil {
				return err
			}
			if d.Logf != nil {
				d.Logf("host %s: failed: %s", h.Name, reason)
			}
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
