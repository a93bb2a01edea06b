package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"booted/internal/envlock"
	"booted/internal/inventory"
	"booted/internal/journal"
	"booted/internal/monitor"
	"booted/internal/service"
)

// holder names this process, for the journal and the locks.
func holder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("pid %d on %s", os.Getpid(), host)
}

// Deploy is a rolling deploy of version to hosts (service:deploy),
// journaled: if this process dies on the way, the acting monitor daemon
// (here, or on a controller sharing the inventory) finishes it.
func (s *Session) Deploy(ctx context.Context, def *service.Def, version string, hosts []inventory.Host) error {
	if s.DryRun {
		return s.Deploys().Deploy(ctx, def, version, hosts)
	}
	e := journal.Entry{Kind: journal.Deploy, Service: def.Name, Version: version, Holder: holder(), Started: time.Now().UTC()}
	for _, h := range hosts {
		e.Hosts = append(e.Hosts, h.Name)
	}
	return journal.Run(ctx, s.Store, s.Env.Name, e, func() error { return s.Deploys().Deploy(ctx, def, version, hosts) })
}

// ResumeOrphan carries out again the operation in flight recorded for
// the environment whose process is gone (its lock is free: the process
// held it for as long as it lived); resumed is false when there is none,
// or when its process still runs it.
func (s *Session) ResumeOrphan(ctx context.Context) (resumed bool, err error) {
	e, found, err := journal.Pending(ctx, s.Store, s.Env.Name)
	if err != nil || !found {
		return false, err
	}
	l, err := s.lockWaiting(ctx, "resuming "+e.What(), 0)
	if errors.Is(err, envlock.ErrBusy) {
		return false, nil // its process lives (or another operation runs: next time)
	}
	if err != nil {
		return false, err
	}
	defer l.Release()
	if e, found, err = journal.Pending(ctx, s.Store, s.Env.Name); err != nil || !found {
		return false, err // it ended between the two looks
	}
	if e.Kind != journal.Deploy {
		return false, fmt.Errorf("the operation in flight on %s is %s, which this booted cannot carry out: run it again by hand", s.Env.Name, e.Kind)
	}
	me := holder()
	monitor.Kept{Store: s.Store, Env: s.Env.Name}.Event(ctx, "operation-resumed", "", fmt.Sprintf("%s, started by %s at %s, whose process is gone: %s carries it out (hosts already serving %s are left alone)",
		e.What(), e.Holder, e.Started.Format(time.RFC3339), me, e.Version))
	def, err := s.LoadService(e.Service)
	if err != nil {
		return true, err
	}
	var hosts []inventory.Host
	for _, n := range e.Hosts {
		h, err := s.Store.Host(ctx, s.Env.Name, n)
		if errors.Is(err, inventory.ErrNotFound) {
			continue // gone since (env:stop, say)
		}
		if err != nil {
			return true, err
		}
		hosts = append(hosts, h)
	}
	e.Holder, e.Resumed = me, e.Resumed+1
	err = journal.Run(ctx, s.Store, s.Env.Name, e, func() error { return s.Deploys().Deploy(ctx, def, e.Version, hosts) })
	if err != nil {
		return true, fmt.Errorf("resuming %s: %w", e.What(), err)
	}
	return true, nil
}
