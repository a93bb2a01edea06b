package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"booted/internal/fleet"
	"booted/internal/inventory"
)

// HostsSSH opens an interactive SSH session on host of ENV (Vagrant's
// ssh): OpenSSH's ssh, as the environment's user, with its deploy key,
// the host key checked strictly against the one booted pinned (a known
// hosts file of that host alone). Its exit status is the session's.
func (r *Runner) HostsSSH(ctx context.Context, envName, host string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		h, err := s.Store.Host(ctx, s.Env.Name, host)
		if errors.Is(err, inventory.ErrNotFound) {
			return fmt.Errorf("hosts:ssh: %s has no host %s (hosts:list %s shows them)", envName, host, envName)
		}
		if err != nil {
			return err
		}
		if h.HostKey == "" || h.Addr == "" || h.State == inventory.Terminated {
			return fmt.Errorf("hosts:ssh: host %s of %s has no pinned key or address (%s): hosts:logged %s waits for it to phone home", host, envName, h.State, envName)
		}
		kh := filepath.Join(s.Dir, "tmp", "known_hosts."+host)
		if err := os.MkdirAll(filepath.Dir(kh), 0o700); err != nil {
			return err
		}
		if err := fleet.WriteKnownHosts(kh, []inventory.Host{h}); err != nil {
			return err
		}
		defer os.Remove(kh)
		port, user := h.Port, s.Env.SSH.User
		if port == 0 {
			port = 22
		}
		if user == "" {
			user = "root"
		}
		cmd := exec.CommandContext(ctx, "ssh", "-i", s.KeyPath, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-p", strconv.Itoa(port), user+"@"+h.Addr)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = r.In, r.Out, r.Err
		if cmd.Stdin == nil {
			cmd.Stdin = os.Stdin
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("hosts:ssh %s %s: %w", envName, host, err)
		}
		return nil
	})
}
