//go:build ignore

// mage.go is Mage's zero-install bootstrap: `go run mage.go TARGET` runs a
// target of magefile.go without installing the mage command.
//
// Mage writes its generated main (mage_output_file.go) next to the
// magefile and compiles into a shared cache at every call, so that two
// calls at once in one checkout (an operator's target next to a running
// monitor daemon) removed each other's file and one failed with "open
// ./mage_output_file.go: no such file or directory". And Mage's cache key
// is the magefile alone: a change to a package it imports went unseen.
//
// So the targets are compiled (mage -compile) from a private copy of the
// magefile, in a directory of its own inside the module (so that it
// builds), into bin/.mage/booted-KEY, KEY hashing every Go source, go.mod
// and go.sum of the module and the Go version; one call builds it (under
// a lock: the others wait for it), and every call runs it. A call with
// Mage's own flags (-f, -compile, -clean, …) goes through Mage as before.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(run()) }

func run() int {
	sweep()
	if _, err := os.Stat("magefile.go"); err != nil {
		fmt.Fprintln(os.Stderr, "mage.go: run it from the project directory:", err)
		return 1
	}
	if !compiledArgs(os.Args[1:]) {
		return viaMage(os.Args[1:])
	}
	exe, err := compiled()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mage.go:", err)
		return 1
	}
	err = syscall.Exec(exe, append([]string{"booted"}, os.Args[1:]...), os.Environ())
	fmt.Fprintln(os.Stderr, "mage.go:", err)
	return 1
}

// compiledArgs says whether args are for the compiled targets: no flags
// but those it takes too.
func compiledArgs(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-") && !slices.Contains([]string{"-v", "-l", "-h", "-t"}, a) {
			return false
		}
	}
	return true
}

// compiled returns the compiled targets of the module's sources as they
// are now, building them if no call has.
func compiled() (string, error) {
	key, err := sourceKey()
	if err != nil {
		return "", err
	}
	dir, err := filepath.Abs(filepath.Join("bin", ".mage"))
	if err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "booted-"+key)
	if _, err := os.Stat(exe); err == nil {
		return exe, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(exe); err == nil { // built while this call waited
		return exe, nil
	}
	tmp := exe + ".part"
	if code := viaMage([]string{"-compile", tmp}); code != 0 {
		os.Remove(tmp)
		return "", fmt.Errorf("compiling the targets failed (exit %d)", code)
	}
	if err := os.Rename(tmp, exe); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "booted-*"))
	for _, o := range old {
		if o != exe {
			os.Remove(o) // an earlier version of the sources
		}
	}
	return exe, nil
}

// sourceKey hashes what the targets are built from: every .go file of
// the module (not services/hello, a module of its own; not bin, inventory
// or calls' copies), go.mod, go.sum, and the Go version.
func sourceKey() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch name := d.Name(); {
			case path == ".":
			case name == "inventory" || name == "bin" || name == "services" || name == "testdata" || strings.HasPrefix(name, "."):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") && path != "go.mod" && path != "go.sum" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", path)
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// viaMage runs Mage on a private copy of the magefile with a private
// binary cache (both go when it ends).
func viaMage(args []string) int {
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
	return mage.ParseAndRun(os.Stdout, os.Stderr, os.Stdin, append([]string{"-d", dir, "-w", "."}, args...))
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
