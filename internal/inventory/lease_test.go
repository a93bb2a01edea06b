package inventory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"booted/internal/pgtest"
)

// leaseHelper is the process TestLease_TakenOverWhenTheHolderDies kills:
// the test binary run again with BOOTED_TEST_LEASE=WHERE. It takes the
// lease, says so, and holds it until it is killed.
func leaseHelper(where string) {
	ctx := context.Background()
	s, err := Open(ctx, where)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if _, err := s.AcquireLease(ctx, "e", "monitor", "helper"); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("held")
	select {}
}

// Two controllers on one inventory: while one holds the lease the other
// waits; when the holder's process is killed (kill -9: nothing of it
// lets go on purpose) the other takes the lease within 10 s, and the
// inventory says who holds it.
func TestLease_TakenOverWhenTheHolderDies(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := openTest(t, where) // migrated before the helper opens it
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BOOTED_TEST_LEASE="+where)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone with the test, however it ends
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) != "held" {
			t.Fatalf("the helper process: %q", line)
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = s.AcquireLease(wctx, "e", "monitor", "second")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a second holder while the first lives: %v", err)
		}
		if h, _, _ := s.Holder(ctx, "e", "monitor"); h.Holder != "helper" {
			t.Errorf("holder %+v, want helper", h)
		}
		cmd.Process.Kill()
		start := time.Now()
		wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		l, err := s.AcquireLease(wctx, "e", "monitor", "second")
		if err != nil {
			t.Fatalf("taking the lease of a killed holder: %v", err)
		}
		t.Logf("taken over %v after the kill", time.Since(start).Round(time.Millisecond))
		defer l.Release()
		if h, _, _ := s.Holder(ctx, "e", "monitor"); h.Holder != "second" {
			t.Errorf("holder %+v, want second", h)
		}
		// another lease, or another environment's, is another lock
		other, err := s.AcquireLease(wctx, "f", "monitor", "second")
		if err != nil {
			t.Fatalf("another environment's lease: %v", err)
		}
		other.Release()
	})
}

// A holder whose connection to PostgreSQL ends (the server restarted, an
// administrator ended it) learns that it lost the lease, and another
// takes it.
func TestLease_LostWithItsConnection(t *testing.T) {
	ctx := context.Background()
	where := pgtest.URL(t)
	a, b := openTest(t, where), openTest(t, where)
	l, err := a.AcquireLease(ctx, "e", "monitor", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	pgtest.Exec(t, where, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted")
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the holder did not learn that its connection ended")
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := b.AcquireLease(wctx, "e", "monitor", "b")
	if err != nil {
		t.Fatalf("after the holder lost it: %v", err)
	}
	m.Release()
}
