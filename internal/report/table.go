package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"booted/internal/printable"
)

// Rows writes rows as an aligned table under header (an empty cell shows
// as "-"; a cell's control characters and escape sequences, which a host
// or a tenant may have put there, are not written to the terminal), or
// with asJSON as JSON lines: one object per row, each on a line
// of its own (as jq, grep and a line reader take them; no rows, no lines).
func Rows[T any](w io.Writer, asJSON bool, rows []T, header []string, cells func(T) []string) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, x := range rows {
			if err := enc.Encode(x); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, x := range rows {
		c := cells(x)
		for i := range c {
			if c[i] = printable.String(strings.ReplaceAll(c[i], "\t", " "), false); c[i] == "" {
				c[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(c, "\t"))
	}
	return tw.Flush()
}

// OrNone is names joined by ", ", or "none".
func OrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// TailLines is the last n lines of s (an error's output), trimmed.
func TailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
