package envlock

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Ensure a second operation waits for the first, is told who holds the
// lock, gets it once the first lets go, and gives up after its wait saying
// who holds it.
func TestAcquire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	ctx := context.Background()
	a, err := Acquire(ctx, path, "service:deploy e hello v2", time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var told string
	got := make(chan *Lock)
	go func() {
		b, err := Acquire(ctx, path, "service:deploy e hello v3", 5*time.Second, func(h string) { told = h })
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("the second operation did not wait")
	default:
	}
	a.Release()
	b := <-got
	if !strings.Contains(told, "service:deploy e hello v2") {
		t.Errorf("the waiting operation was told %q", told)
	}
	_, err = Acquire(ctx, path, "env:stop e", 200*time.Millisecond, nil)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "service:deploy e hello v3") {
		t.Errorf("err = %v, want ErrBusy naming the holder", err)
	}
	b.Release()
	c, err := Acquire(ctx, path, "env:stop e", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Release()
}
