package discovery

import (
	"context"
	"time"

	"booted/internal/bootlog"
	"booted/internal/inventory"
)

// Await catches up with the boot log, then waits for the hosts that are
// booting: each either phones home or late(h) says why it is failed (the
// boot timeout passed, with its console's last lines, say); "" keeps
// waiting. OnBooted is told of the hosts that phoned home meanwhile.
func (d *Discoverer) Await(ctx context.Context, late func(h inventory.Host) string) error {
	watch := bootlog.Watch(d.Log) // a callback wakes the wait below at once
	defer watch.Close()
	for {
		if err := d.CatchUp(ctx); err != nil {
			return err
		}
		hosts, err := d.Store.Hosts(ctx, d.Env)
		if err != nil {
			return err
		}
		var waiting []inventory.Host
		for _, h := range hosts {
			if h.State != inventory.Booting {
				continue
			}
			reason := late(h)
			if reason == "" {
				waiting = append(waiting, h)
				continue
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
		if len(waiting) == 0 {
			return nil
		}
		if d.Waiting != nil {
			d.Waiting(waiting)
		}
		wait := func() error { return watch.Wait(ctx, 100*time.Millisecond) }
		if d.Pause != nil {
			if err := d.Pause(wait); err != nil {
				return err
			}
		} else if err := wait(); err != nil {
			return err
		}
	}
}
