// Package inventory is booted's embedded store (SQLite in WAL mode under
// inventory/): every host of every environment with its lifecycle state, an
// event for every change, counters, and the boot-log position of discovery.
//
// The CLI and the monitor daemon open the same file at once; writes are
// serialised by SQLite's lock with a busy timeout, and every change is one
// transaction, so a crash leaves either the old or the new state.
package inventory
