// Package local provides light hosts on this Linux machine (root needed).
//
// A host is a network namespace with a veth on the environment's bridge and
// an address of the environment's subnet; a mount namespace that gives it its
// own /root, /opt, /etc/booted, /etc/ssh, /var/log and /tmp (directories under
// inventory/ENV/hosts/NAME/fs, kept across reboots like a disk); its own
// hostname (a UTS namespace); and a real OpenSSH sshd with its own host key
// that takes only the environment's deploy key. Booting runs the phone-home
// script, as a kickstart install does in %post.
//
// Stopping a host kills every process in its network namespace (found by
// namespace, killed by PID) and takes its link down; starting it boots it
// again. Deleting removes namespace, veth and files.
package local
