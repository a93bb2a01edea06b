package pidfile

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A pid is believed only while its process's command line has the marker;
// Stop ends it (a process that ignores the signal is killed after grace).
func TestReadAndStop(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	// The shell ignores SIGTERM: Stop must fall back to SIGKILL.
	cmd := exec.Command("sh", "-c", "trap '' TERM; sleep 30 & wait; : "+marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reap it: a zombie counts as gone
	t.Cleanup(func() { cmd.Process.Kill() })
	file := filepath.Join(dir, "x.pid")
	os.WriteFile(file, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	// Until the child has exec'd the shell, its command line is the test's.
	for i := 0; i < 100 && Read(file, marker) == 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if got := Read(file, marker); got != cmd.Process.Pid {
		t.Fatalf("Read = %d, want %d", got, cmd.Process.Pid)
	}
	if got := Read(file, "/some/other/conf"); got != 0 {
		t.Errorf("Read with another process's marker = %d, want 0", got)
	}
	if got := Read(filepath.Join(dir, "missing.pid"), marker); got != 0 {
		t.Errorf("Read of a missing file = %d", got)
	}
	if err := Stop(context.Background(), file, marker, syscall.SIGTERM, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := Read(file, marker); got != 0 {
		t.Errorf("after Stop the process still runs (pid %d)", got)
	}
}
