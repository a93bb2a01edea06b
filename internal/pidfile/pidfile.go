// Package pidfile finds a process booted started by the pid file it wrote,
// and stops it by that pid: never by name. A pid is only believed while
// its process's command line names what booted gave it (its configuration
// file, its directory): a pid reused by another process, or a zombie
// (whose command line is empty), counts as gone.
package pidfile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Read returns the pid in file if that process runs and its command line
// contains marker, else 0.
func Read(file, marker string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(marker)) {
		return 0 // gone, or the pid now belongs to another process
	}
	return pid
}

// Stop sends the process of file (see Read) sig, waits up to grace for it
// to end, then kills it. It returns ctx's error if ctx ends first, and an
// error if the process outlives SIGKILL.
func Stop(ctx context.Context, file, marker string, sig syscall.Signal, grace time.Duration) error {
	pid := Read(file, marker)
	if pid == 0 {
		return nil
	}
	syscall.Kill(pid, sig)
	deadline := time.Now().Add(grace)
	for Read(file, marker) == pid && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if Read(file, marker) != pid {
		return nil
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 50 && Read(file, marker) == pid; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if Read(file, marker) == pid {
		return fmt.Errorf("pid %d (%s) would not stop", pid, marker)
	}
	return nil
}
