package targets

import "booted/internal/report"

// printRows writes rows as an aligned table, or as JSON with BOOTED_OUTPUT=json.
func printRows[T any](r *Runner, rows []T, header []string, cells func(T) []string) error {
	return report.Rows(r.Out, r.JSON, rows, header, cells)
}
