// Package hostrec keeps a provider's host records: one directory per host
// under the provider's directory, each with a record the provider reads
// (its address, MAC, device names), allocated under a lock so that two
// processes never give two hosts one address.
package hostrec

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"booted/internal/bridge"
)

// Allocate returns, under a lock of dir, the record of host name: the one
// load finds, or a new one that create makes (and records) with the lowest
// free address of subnet. addr reads a record's address; every directory of
// dir is a host.
func Allocate[T any](dir, name string, subnet netip.Prefix, load func(string) (T, error), addr func(T) string, create func(netip.Addr) (T, error)) (T, error) {
	var zero T
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return zero, err
	}
	unlock, err := bridge.LockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return zero, err
	}
	defer unlock()
	if r, err := load(name); err == nil {
		return r, nil
	}
	used := map[netip.Addr]bool{}
	recs, _ := Records(dir, load)
	for _, r := range recs {
		if a, err := netip.ParseAddr(addr(r)); err == nil {
			used[a] = true
		}
	}
	a, err := bridge.FreeAddr(subnet, used)
	if err != nil {
		return zero, fmt.Errorf("host %s: %w", name, err)
	}
	return create(a)
}

// Records returns the records load finds for the entries of dir (those it
// cannot load are not hosts); none if dir does not exist.
func Records[T any](dir string, load func(string) (T, error)) ([]T, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []T
	for _, e := range ents {
		if r, err := load(e.Name()); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
