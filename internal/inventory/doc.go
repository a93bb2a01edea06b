// Package inventory is booted's store: every host of every environment
// with its lifecycle state, an event for every change, counters,
// attributes, pools, enrollments, and the boot-log position of discovery.
// It lives in a SQLite file in WAL mode under inventory/ (the default), or
// in a PostgreSQL database (a postgres:// URL) that several machines share;
// engine.go holds what differs between the two, the schema's migrations
// included.
//
// The CLI and the monitor daemon open the same inventory at once; writes
// take turns (SQLite's lock with a busy timeout, an advisory lock on
// PostgreSQL), and every change is one transaction, so a crash leaves
// either the old or the new state.
package inventory
