package targets

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

// print writes rows as an aligned table, or as JSON with BOOTED_OUTPUT=json.
func printRows[T any](r *Runner, rows []T, header []string, cells func(T) []string) error {
	if r.JSON {
		if rows == nil {
			rows = []T{}
		}
		enc := json.NewEncoder(r.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(r.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, x := range rows {
		c := cells(x)
		for i := range c {
			if c[i] == "" {
				c[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(c, "\t"))
	}
	return tw.Flush()
}
