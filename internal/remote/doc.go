// Package remote is booted's SSH engine: connections checked against the
// host keys pinned at phone-home (never ignored), context-aware dialing and
// commands, and bounded fan-out over many hosts with a result per host.
package remote
