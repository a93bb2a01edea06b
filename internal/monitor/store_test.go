package monitor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/inventory"
)

// monitor:status names each worker with its health (the landed one said
// "workers: map[serving:2]" while one of the two was dead), and its events
// leave out the load balancer's own ready ⇄ serving comings and goings.
func TestPrintStatus_HealthAndEvents(t *testing.T) {
	ctx := context.Background()
	st, err := inventory.Open(ctx, filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Update(ctx, func(tx *inventory.Tx) error {
		for name, role := range map[string]string{"lb1": "loadbalancers", "w1": "workers", "w2": "workers"} {
			if err := tx.Modify("local", name, func(h *inventory.Host) error { h.Role, h.State = role, inventory.Booted; return nil }); err != nil {
				return err
			}
		}
		for _, e := range []inventory.Event{
			{Env: "local", Host: "lb1", Kind: "state", From: inventory.Serving, To: inventory.Ready},
			{Env: "local", Host: "lb1", Kind: "state", From: inventory.Ready, To: inventory.Serving},
			{Env: "local", Host: "w2", Kind: "state", From: inventory.Serving, To: inventory.Failed, Detail: "liveness: no reply to ping"},
			{Env: "local", Kind: "monitor-decision", Detail: "replace w2: unhealthy"},
		} {
			if err := tx.Record(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	k := Kept{Store: st, Env: "local"}
	k.Save(ctx, Saved{Last: &Status{Time: time.Now(), Workers: map[string]int{"serving": 2},
		Health: map[string]string{"w1": "healthy", "w2": "unhealthy for 2 intervals"}, Decision: "replace w2"}})
	var b strings.Builder
	if err := k.PrintStatus(ctx, &b, 100*time.Millisecond, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "workers: w1 healthy, w2 unhealthy for 2 intervals\n") {
		t.Errorf("monitor:status does not name each worker's health:\n%s", out)
	}
	if strings.Contains(out, "serving → ready") || strings.Contains(out, "ready → serving") || !strings.Contains(out, "w2     serving → failed liveness: no reply to ping") || !strings.Contains(out, "replace w2: unhealthy") {
		t.Errorf("monitor:status events:\n%s", out)
	}
}
