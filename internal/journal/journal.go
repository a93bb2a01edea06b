// Package journal keeps the operation in flight on an environment in the
// inventory, so that when the process running it dies (kill -9, its
// machine gone) another one (the acting monitor daemon, on this
// controller or another sharing the inventory) finds it and carries it out
// again. An operation runs under the environment's lock for as long as it
// lives, so an entry whose environment's lock is free is an orphan. Only
// operations that are idempotent host by host are journaled (a rolling
// deploy leaves a host already serving the version alone): carried out
// again, they finish what was left, deploying no host twice.
package journal

import (
	"context"
	"fmt"
	"time"

	"booted/internal/inventory"
)

// Deploy is the kind of a rolling deploy's entry (service:deploy).
const Deploy = "service:deploy"

// Entry is one operation in flight.
type Entry struct {
	Kind    string   `json:"kind"`
	Service string   `json:"service"`
	Version string   `json:"version"`
	Hosts   []string `json:"hosts"`
	// Holder is which process runs it, where; Started when.
	Holder  string    `json:"holder"`
	Started time.Time `json:"started"`
	// Resumed counts the times another process carried it out again.
	Resumed int `json:"resumed,omitempty"`
}

// What says what the entry is, as the environment's lock says it.
func (e Entry) What() string {
	return fmt.Sprintf("%s %s %s (%d hosts)", e.Kind, e.Service, e.Version, len(e.Hosts))
}

const key = "journal/in-flight"

// Begin records e as env's operation in flight (the caller holds the
// environment's lock).
func Begin(ctx context.Context, st *inventory.Store, env string, e Entry) error {
	return st.Update(ctx, func(tx *inventory.Tx) error { return tx.Put(env, key, e) })
}

// End records that env's operation in flight ended (done or failed: a
// failure is the operator's to see, not another process's to retry).
func End(ctx context.Context, st *inventory.Store, env string) error {
	return st.Update(context.WithoutCancel(ctx), func(tx *inventory.Tx) error { return tx.Delete(env, key) })
}

// Pending returns env's operation in flight, if one is recorded.
func Pending(ctx context.Context, st *inventory.Store, env string) (e Entry, found bool, err error) {
	found, err = st.Get(ctx, env, key, &e)
	return e, found, err
}

// Run records e, runs fn, and records that it ended, however it ended:
// stopped on purpose (Ctrl-C) included, which is the operator's to decide;
// only a process that dies without a word (kill -9, its machine gone)
// leaves the entry for another.
func Run(ctx context.Context, st *inventory.Store, env string, e Entry, fn func() error) error {
	if err := Begin(ctx, st, env, e); err != nil {
		return err
	}
	err := fn()
	if endErr := End(ctx, st, env); err == nil {
		err = endErr
	}
	return err
}
