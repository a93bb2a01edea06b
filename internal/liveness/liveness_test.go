package liveness

import (
	"context"
	"testing"
	"time"

	"booted/internal/testutil"
)

// A host that answers is known alive at its first reply: one echo request
// sent, not three (the landed check waited for all three: 200 ms per
// check of a live host).
func TestPing_StopsAtTheFirstReply(t *testing.T) {
	testutil.RequireRoot(t, "raw ICMP sockets")
	sent, err := ping(context.Background(), "127.0.0.1", 3, 2*time.Second)
	if err != nil || sent != 1 {
		t.Errorf("ping 127.0.0.1: %d sent, %v; want 1 sent and a reply", sent, err)
	}
}
