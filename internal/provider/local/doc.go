// Package local provides light hosts on this Linux machine (root needed).
//
// A host is a network namespace with a veth on the environment's bridge and
// an address of the environment's subnet (its port guarded: its own MAC and
// address alone); its own mount, PID, UTS and IPC namespaces; its own root,
// a tmpfs holding this machine's /usr and /etc read-only and the host's own
// /root, /opt, /etc/booted, /etc/ssh, /var/log and /tmp (directories under
// inventory/ENV/hosts/NAME/fs, kept across reboots like a disk), a minimal
// /dev, its own /proc (kernel knobs read-only) and /sys read-only, nothing
// else of this machine; a container's capabilities alone (setpriv, no new
// privileges); and a real OpenSSH sshd with its own host key that takes
// only the environment's deploy key. Booting runs the phone-home script, as
// a kickstart install does in %post. booted writes into a host's files
// through no link the host made (atomicfile.WriteIn). Its processes run in
// a user namespace of their own: its root is root there and HostUID here,
// an unprivileged id that owns the host's files, and it may make no user
// namespace of its own; its network lets it bind low ports. A cgroup of
// its own bounds its memory, processes and CPU (MemoryLimit, PidsLimit,
// CPUs). It shares this machine's kernel (no seccomp filter).
//
// Stopping a host kills every process in its network namespace (found by
// namespace, killed by PID) and takes its link down; starting it boots it
// again. Deleting removes namespace, veth and files.
package local
