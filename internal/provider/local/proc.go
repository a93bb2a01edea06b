package local

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidsIn returns the live processes whose network namespace has inode ino.
func pidsIn(ino uint64) []int {
	if ino == 0 {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && inNetns(pid, ino) {
			out = append(out, pid)
		}
	}
	return out
}

// inNetns tells whether pid is a live process (not this one) in the
// network namespace with inode ino.
func inNetns(pid int, ino uint64) bool {
	if pid <= 0 || pid == os.Getpid() {
		return false
	}
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	return err == nil && link == fmt.Sprintf("net:[%d]", ino) && !zombie(pid)
}

// zombie reports whether pid has exited but is not reaped yet (or is gone).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// killAll ends every process in the namespace: SIGTERM, then SIGKILL for
// what is still there after grace.
func killAll(ctx context.Context, ino uint64, grace time.Duration) error {
	pids := pidsIn(ino)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for len(pidsIn(ino)) > 0 && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Now()
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, pid := range pidsIn(ino) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline = time.Now().Add(2 * time.Second)
	for {
		left := pidsIn(ino)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v would not die", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
