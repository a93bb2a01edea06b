package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Rows writes rows as an aligned table under header (an empty cell shows
// as "-"), or as a JSON array with asJSON.
func Rows[T any](w io.Writer, asJSON bool, rows []T, header []string, cells func(T) []string) error {
	if asJSON {
		if rows == nil {
			rows = []T{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
