//go:build ignore

// mage.go is Mage's zero-install bootstrap: `go run mage.go TARGET` runs a
// target of magefile.go without installing the mage command.
//
// Mage writes its generated main (mage_output_file.go) next to the
// magefile and compiles into a shared cache at every call, so that two
// calls at once in one checkout (an operator's target next to a running
// monitor daemon) removed each other's file and one failed with "open
// ./mage_output_file.go: no such file or directory". Each call here gets a
// private copy of the magefile, in a directory of its own inside the module
// (so that it builds), and a private binary cache; both go when it ends.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(run()) }

func run() int {
	sweep()
	dir, err := os.MkdirTemp(".", ".mage-")
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mage.go:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	src, err := os.ReadFile("magefile.go")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "magefile.go"), src, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mage.go: run it from the project directory:", err)
		return 1
	}
	os.Setenv("MAGEFILE_CACHE", filepath.Join(dir, "cache"))
	return mage.ParseAndRun(os.Stdout, os.Stderr, os.Stdin, append([]string{"-d", dir, "-w", "."}, os.Args[1:]...))
}

// sweep removes the directories of calls killed before they could (an
// hour old: a call only needs its copy while it compiles).
func sweep() {
	ents, _ := os.ReadDir(".")
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".mage-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(e.Name())
		}
	}
}
