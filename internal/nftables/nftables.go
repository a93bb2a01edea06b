// Package nftables makes and removes booted's nftables tables, each whole
// in one transaction (nft -f): a table is replaced, never edited, so that
// no packet meets half of it.
package nftables

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Table is the name of a table of booted's for env: prefix, then env with
// '-' and '.' as '_'.
func Table(prefix, env string) string {
	return prefix + strings.NewReplacer("-", "_", ".", "_").Replace(env)
}

// Replace makes table (of family ip or inet) hold body (its chains), in
// the transaction that removes what it held.
func Replace(ctx context.Context, family, table, body string) error {
	return apply(ctx, fmt.Sprintf("table %[1]s %[2]s {}\ndelete table %[1]s %[2]s\ntable %[1]s %[2]s {\n%[3]s}\n", family, table, body))
}

// Delete removes table if it is there (without nft: nothing to do).
func Delete(ctx context.Context, family, table string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	return apply(ctx, fmt.Sprintf("table %[1]s %[2]s {}\ndelete table %[1]s %[2]s\n", family, table))
}

func apply(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
