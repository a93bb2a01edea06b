package pkgs

import (
	"os"
	"path/filepath"
	"testing"
)

// A need is met by a command on PATH or in the system directories, or,
// for an absolute path, by that file (Debian's /usr/bin/aws where pip's
// aws comes first on PATH).
func TestHave(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "__init__.py")
	os.WriteFile(file, nil, 0o644)
	for name, want := range map[string]bool{
		"sh":                         true,
		"no-such-command-booted":     false,
		file:                         true,
		filepath.Join(dir, "absent"): false,
		dir:                          false,
	} {
		if got := Have(name); got != want {
			t.Errorf("Have(%q) = %v, want %v", name, got, want)
		}
	}
	if m := Missing(Need{file: "present", filepath.Join(dir, "absent"): "python3-x"}); len(m) != 1 || m[0] != "python3-x" {
		t.Errorf("Missing = %v", m)
	}
}
