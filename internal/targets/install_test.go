package targets

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/testutil"
)

// The install target gives a compiled `booted` with every target, working
// from any directory; its exit status tells a failed host (1) from refused
// input (2) and unreachable hosts (3).
func TestInstall_CompiledCommand(t *testing.T) {
	testutil.RequireCommands(t, "go")
	f := newFixture(t, testutil.DefaultEnv)
	repo := testutil.RepoRoot(t)
	r := *f.r
	r.Root, r.BinDir = repo, t.TempDir()
	var out strings.Builder
	r.Out = &out
	if err := r.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "installed "+filepath.Join(r.BinDir, "booted")) {
		t.Errorf("install said: %s", out.String())
	}
	booted := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(r.BinDir, "booted"), args...)
		cmd.Dir = t.TempDir() // any directory
		cmd.Env = append(os.Environ(), "BOOTED_ROOT="+f.proj.Root, "BOOTED_INVENTORY="+f.proj.Inventory)
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(b), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(b), 0
	}
	if out, code := booted("-l"); code != 0 || !strings.Contains(out, "env:startAll") || !strings.Contains(out, "install") {
		t.Fatalf("booted -l: %d %s", code, out)
	}
	env := f.proj.Env
	if out, code := booted("hosts:list", "nosuchenv"); code != 2 {
		t.Errorf("an environment that does not exist: exit %d, want 2 (refused input): %s", code, out)
	}
	if out, code := booted("env:startAll", env); code != 0 {
		t.Fatalf("env:startAll: exit %d: %s", code, out)
	}
	if out, code := booted("hosts:run", env+"/role:workers and nto state:failed", "true"); code != 2 || !strings.Contains(out, "^") {
		t.Errorf("a bad expression: exit %d, want 2 (refused input): %s", code, out)
	}
	if out, code := booted("hosts:run", env+"/workers", "[ $(hostname) != w2 ]"); code != 1 || !strings.Contains(out, "w2") {
		t.Errorf("a command failing on w2: exit %d, want 1: %s", code, out)
	}
	if out, code := booted("image:stop", env, "w2"); code != 0 {
		t.Fatalf("image:stop: exit %d: %s", code, out)
	}
	if out, code := booted("hosts:run", env+"/workers", "true"); code != 3 || !strings.Contains(out, "w2 (unreachable") {
		t.Errorf("w2 stopped: exit %d, want 3 (unreachable): %s", code, out)
	}
}
