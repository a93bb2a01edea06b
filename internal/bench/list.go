package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"booted/internal/inventory"
	"booted/internal/pkgs"
)

// ListEnv is the environment ListProject makes.
const ListEnv = "benchlist"

// ListNeeds is the peer of the listing figures: ansible-inventory.
var ListNeeds = pkgs.Need{"ansible-inventory": "ansible-core"}

// ListProject makes a project root in dir whose environment ListEnv has
// role fleet (prefix h, max n) holding n recorded hosts, as booted keeps
// them after they came up, and the same hosts as an ansible inventory
// (INI, one group); it returns the inventory's path. Nothing is started.
// The hosts are recorded in database (BOOTED_DATABASE) when it is set, in
// which ListEnv must have no hosts yet; else in the project's file.
func ListProject(ctx context.Context, dir string, n int, database string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "envs"), 0o755); err != nil {
		return "", err
	}
	env := fmt.Sprintf(`version: 1
provider:
  type: local
  local: {subnet: 10.250.0.0/16}
roles:
  fleet: {prefix: h, count: 0, min: 0, max: %d}
  workers: {prefix: w, count: 1, min: 1, max: 2}
`, n)
	if err := os.WriteFile(filepath.Join(dir, "envs", ListEnv+".yaml"), []byte(env), 0o644); err != nil {
		return "", err
	}
	inv := filepath.Join(dir, "inventory")
	if err := os.MkdirAll(inv, 0o700); err != nil {
		return "", err
	}
	if database == "" {
		database = filepath.Join(inv, "booted.db")
	}
	st, err := inventory.Open(ctx, database)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if hs, err := st.Hosts(ctx, ListEnv); err != nil || len(hs) > 0 {
		if err == nil {
			err = fmt.Errorf("bench: the inventory's environment %s has %d hosts already: give the bench a database of its own (BOOTED_DATABASE)", ListEnv, len(hs))
		}
		return "", err
	}
	var ini strings.Builder
	ini.WriteString("[fleet]\n")
	err = st.Update(ctx, func(tx *inventory.Tx) error {
		for i := 1; i <= n; i++ {
			name, addr := fmt.Sprintf("h%d", i), fmt.Sprintf("10.250.%d.%d", i/250, i%250+2)
			fmt.Fprintf(&ini, "%s ansible_host=%s\n", name, addr)
			if err := tx.Modify(ListEnv, name, func(h *inventory.Host) error {
				h.Role, h.Provider, h.Addr = "fleet", "local", addr
				return nil
			}); err != nil {
				return err
			}
			for _, st := range []inventory.State{inventory.Provisioning, inventory.Booting, inventory.Booted, inventory.Ready} {
				if err := tx.Advance(ListEnv, name, st, ""); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "ansible-inventory.ini")
	return path, os.WriteFile(path, []byte(ini.String()), 0o644)
}

// Listing is one listing of booted's to time.
type Listing struct {
	Name string
	Run  func(ctx context.Context) error
}

// List times booted's listings and `ansible-inventory --list` of the same
// hosts (the ansible inventory at ini), runs times each, and prints the
// medians side by side. A missing ansible-inventory is left out, saying so.
//
// It ends with the inventory's engine and size (the database at where).
func List(ctx context.Context, out, log io.Writer, n, runs int, booted []Listing, ini, where string) error {
	s := &Setup{Runs: runs, Log: log}
	if s.Runs < 1 {
		s.Runs = 1
	}
	type row struct {
		tool, what string
		median     time.Duration
	}
	var rows []row
	for _, l := range booted {
		m, err := s.measure("booted "+l.Name, func() error { return l.Run(ctx) })
		if err != nil {
			return err
		}
		rows = append(rows, row{"booted", l.Name, m})
	}
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		fmt.Fprintf(log, "bench: ansible-inventory is missing (apt-get install ansible-core): left out\n")
	} else {
		m, err := s.measure("ansible-inventory --list", func() error {
			return run(ctx, "ansible-inventory", "-i", ini, "--list")
		})
		if err != nil {
			return err
		}
		rows = append(rows, row{"ansible-inventory", "--list", m})
	}
	fmt.Fprintf(out, "listing %d hosts (median of %d runs)\n", n, s.Runs)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOOL\tLISTING\tMEDIAN")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%v\n", r.tool, r.what, r.median.Round(time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	st, err := inventory.Open(ctx, where)
	if err != nil {
		return err
	}
	defer st.Close()
	size, err := st.Size(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "inventory: %s, %.1f MB\n", st.Engine(), float64(size)/1e6)
	return err
}
