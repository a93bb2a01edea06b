package fanout

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Ensure that Each never runs more than parallel at once and runs them all.
func TestEach_Bounded(t *testing.T) {
	var running, peak, done atomic.Int32
	Each(context.Background(), 50, 4, func(ctx context.Context, i int) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		running.Add(-1)
		done.Add(1)
	}, nil)
	if peak.Load() > 4 || done.Load() != 50 {
		t.Errorf("peak %d (bound 4), done %d of 50", peak.Load(), done.Load())
	}
}

// Ensure that items not started when the context ends are skipped, and
// reported.
func TestEach_Cancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran, skipped atomic.Int32
	err := Each(ctx, 10, 1, func(ctx context.Context, i int) {
		ran.Add(1)
		if i == 2 {
			cancel()
		}
	}, func(int) { skipped.Add(1) })
	if err == nil || ran.Load()+skipped.Load() != 10 || skipped.Load() < 6 {
		t.Errorf("err %v, ran %d, skipped %d", err, ran.Load(), skipped.Load())
	}
}

func TestMap(t *testing.T) {
	got := Map(context.Background(), []int{1, 2, 3}, 0, func(_ context.Context, x int) int { return x * x })
	if got[0] != 1 || got[1] != 4 || got[2] != 9 {
		t.Errorf("Map = %v", got)
	}
}
