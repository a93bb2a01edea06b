package testutil

import (
	"booted/internal/bridge"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// SendARPReply sends, from eth0 in network namespace ns, three ARP
// replies saying that claimIP is at srcMAC, to dstMAC (dstIP): what a host
// answering for another's address sends.
func SendARPReply(t *testing.T, ns, srcMAC, claimIP, dstMAC, dstIP string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { // a thread of its own, left in ns and never reused (it exits locked)
		runtime.LockOSThread()
		errc <- func() error {
			f, err := os.Open("/run/netns/" + ns)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			ifc, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			src, _ := net.ParseMAC(srcMAC)
			dst, _ := net.ParseMAC(dstMAC)
			frame := append(append(append([]byte{}, dst...), src...), 0x08, 0x06)
			frame = binary.BigEndian.AppendUint16(frame, 1)      // Ethernet
			frame = binary.BigEndian.AppendUint16(frame, 0x0800) // IPv4
			frame = append(frame, 6, 4)
			frame = binary.BigEndian.AppendUint16(frame, 2) // reply
			frame = append(append(frame, src...), net.ParseIP(claimIP).To4()...)
			frame = append(append(frame, dst...), net.ParseIP(dstIP).To4()...)
			addr := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Protocol: htons(unix.ETH_P_ARP), Halen: 6}
			copy(addr.Addr[:], dst)
			for range 3 {
				if err := unix.Sendto(fd, frame, 0, addr); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("sending an ARP reply from %s: %v", ns, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// PortGuarded says whether port has env's port security (bridge.Guard) in
// network namespace ns ("": this machine's).
func PortGuarded(ns, env, port string) bool {
	args := []string{"nft", "list", "map", "bridge", bridge.GuardTable(env), "ports"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	return err == nil && strings.Contains(string(out), `"`+port+`" : jump`)
}
