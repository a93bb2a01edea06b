package targets

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Test installs what the tests need (as Setup does), then runs every test
// of the module with go test, streaming its output.
func Test(ctx context.Context, out io.Writer) error {
	if err := Setup(ctx, out); err != nil {
		return err
	}
	args := []string{"test", "-count=1", "-timeout", "30m", "./..."}
	if v := os.Getenv("BOOTED_TEST_ARGS"); v != "" {
		args = append([]string{"test"}, strings.Fields(v)...)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}
