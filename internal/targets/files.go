package targets

import (
	"context"
	"fmt"
	"os"
	"path"

	"booted/internal/config"
	"booted/internal/inventory"
)

// hostsOf returns the hosts of sel (ENV or ENV/ROLE) a multi-host target
// works on: recorded, with an address, within BOOTED_LIMIT.
func (s *session) hostsOf(ctx context.Context, sel string) ([]inventory.Host, error) {
	_, role := config.SplitSelector(sel)
	if err := s.RecordKnown(ctx); err != nil {
		return nil, err
	}
	hosts, err := s.SelectBy(ctx, role, nil)
	if err == nil {
		hosts, err = s.Ops().Limited(hosts)
	}
	if err == nil && len(hosts) == 0 {
		err = fmt.Errorf("%s: no hosts (hosts:list %s shows the inventory)", sel, s.Env.Name)
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
	envName, _ := config.SplitSelector(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		return s.Transfer().Put(ctx, hosts, src, dst)
	})
}

// HostsGet copies SRC from every host of ENV (ENV/ROLE, BOOTED_LIMIT) to
// DIR/HOST/BASENAME, in parallel over SFTP, as Fabric's get: a local copy
// with that content already is left alone.
func (r *Runner) HostsGet(ctx context.Context, sel, src, dir string) error {
	if !path.IsAbs(src) {
		return fmt.Errorf("hosts:get: %s: give the path on the hosts in full (/…)", src)
	}
	envName, _ := config.SplitSelector(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		return s.Transfer().Get(ctx, hosts, src, dir)
	})
}
