package targets

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"booted/internal/inventory"
)

// hostsOf returns the hosts of sel (ENV or ENV/ROLE) a multi-host target
// works on: recorded, with an address, within BOOTED_LIMIT.
func (s *session) hostsOf(ctx context.Context, sel string) ([]inventory.Host, error) {
	_, role := splitSel(sel)
	if err := s.recordKnown(ctx); err != nil {
		return nil, err
	}
	hosts, err := s.selectBy(ctx, role, nil)
	if err == nil {
		hosts, err = s.limited(hosts)
	}
	if err == nil && len(hosts) == 0 {
		err = fmt.Errorf("%s: no hosts (hosts:list %s shows the inventory)", sel, s.env.Name)
	}
	return hosts, err
}

// HostsPut copies local file SRC to DST on every host of ENV (ENV/ROLE,
// BOOTED_LIMIT), in parallel over SFTP, as Fabric's put: a host that has
// that content at DST already is left alone ("unchanged"); the recap says
// what each got.
func (r *Runner) HostsPut(ctx context.Context, sel, src, dst string) error {
	if st, err := os.Stat(src); err != nil {
		return fmt.Errorf("hosts:put: %w", err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("hosts:put: %s is not a regular file (it copies one file; a directory: tar it first)", src)
	}
	if !path.IsAbs(dst) {
		return fmt.Errorf("hosts:put: %s: give the path on the hosts in full (/…)", dst)
	}
	envName, _ := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		_, err = s.op(ctx, "hosts:put "+src, hosts, opOptions{live: true}, func(ctx context.Context, c hostConn) error {
			n, err := c.Put(ctx, src, dst)
			if err != nil {
				return fmt.Errorf("host %s: %w", c.Host().Name, err)
			}
			c.Note(copied(n, dst))
			return nil
		})
		return err
	})
}

// HostsGet copies SRC from every host of ENV (ENV/ROLE, BOOTED_LIMIT) to
// DIR/HOST/BASENAME, in parallel over SFTP, as Fabric's get: a local copy
// with that content already is left alone.
func (r *Runner) HostsGet(ctx context.Context, sel, src, dir string) error {
	if !path.IsAbs(src) {
		return fmt.Errorf("hosts:get: %s: give the path on the hosts in full (/…)", src)
	}
	envName, _ := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		_, err = s.op(ctx, "hosts:get "+src, hosts, opOptions{live: true}, func(ctx context.Context, c hostConn) error {
			dst := filepath.Join(dir, c.Host().Name, path.Base(src))
			n, err := c.Get(ctx, src, dst)
			if err != nil {
				return fmt.Errorf("host %s: %w", c.Host().Name, err)
			}
			c.Note(copied(n, dst))
			return nil
		})
		return err
	})
}

func copied(n int64, to string) string {
	if n == 0 {
		return "unchanged: " + to + " has that content already"
	}
	return fmt.Sprintf("copied %d bytes to %s", n, to)
}
