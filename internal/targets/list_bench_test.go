package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"booted/internal/inventory"
)

// BenchmarkList10000 lists an environment whose role fleet (prefix h,
// max 10,000) holds 10,000 hosts: hosts:list, hosts:query, env:status.
// Each asked the role of every host by naming all 10,000 of its names
// (hosts:list 86.6 s, hosts:query 188 s, env:status 69 s, measured once
// on the code before); the figures are this benchmark's to tell.
func BenchmarkList10000(b *testing.B) {
	root, inv := b.TempDir(), ""
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	os.WriteFile(filepath.Join(root, "envs", "big.yaml"), []byte(`version: 1
provider:
  type: local
  local: {subnet: 10.250.0.0/16}
roles:
  fleet: {prefix: h, count: 0, min: 0, max: 10000}
  workers: {prefix: w, count: 1, min: 1, max: 2}
`), 0o644)
	inv = filepath.Join(root, "inventory")
	os.MkdirAll(inv, 0o700)
	ctx := context.Background()
	st, err := inventory.Open(ctx, filepath.Join(inv, "booted.db"))
	if err != nil {
		b.Fatal(err)
	}
	err = st.Update(ctx, func(tx *inventory.Tx) error {
		for i := 1; i <= 10000; i++ {
			if err := tx.Modify("big", fmt.Sprintf("h%d", i), func(h *inventory.Host) error {
				h.Role, h.Provider, h.State, h.Addr = "fleet", "local", inventory.Requested, fmt.Sprintf("10.250.%d.%d", i/250, i%250+2)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		b.Fatal(err)
	}
	r := newRunner(root, inv, io.Discard, io.Discard)
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"hosts:list", func() error { return r.HostsList(ctx, "big") }},
		{"hosts:query", func() error { return r.HostsQuery(ctx, "big", "role:fleet") }},
		{"env:status", func() error { return r.EnvStatus(ctx, "big") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
