package testutil

import (
	"encoding/binary"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opens counts the opens of the file at path (by any process, through any
// mount of it) from now on, as the kernel reports them: what a user would
// watch to see whether a file is read. Each open is held until counted
// (fanotify's permission events, which, unlike inotify's, are never merged
// when two come together). Each call returns the opens since the last.
func Opens(t testing.TB, path string) func() int {
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		t.Fatalf("fanotify: %v", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM, unix.AT_FDCWD, path); err != nil {
		unix.Close(fd)
		t.Fatalf("fanotify mark %s: %v", path, err)
	}
	var mu sync.Mutex
	n := 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
			m, err := unix.Read(fd, buf)
			if err != nil || m <= 0 {
				continue // nothing yet (EAGAIN)
			}
			for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= m; {
				ev := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
				if ev.Mask&unix.FAN_OPEN_PERM != 0 {
					mu.Lock()
					n++
					mu.Unlock()
					resp := make([]byte, 8)
					binary.NativeEndian.PutUint32(resp[0:], uint32(ev.Fd))
					binary.NativeEndian.PutUint32(resp[4:], unix.FAN_ALLOW)
					unix.Write(fd, resp)
				}
				if ev.Fd >= 0 {
					unix.Close(int(ev.Fd))
				}
				off += int(ev.Event_len)
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(fd) // (an open still waiting is allowed)
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		got := n
		n = 0
		return got
	}
}
