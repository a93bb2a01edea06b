//go:build ignore

// mage.go is Mage's zero-install bootstrap: `go run mage.go TARGET` runs a
// target of magefile.go without installing the mage command.
package main

import (
	"os"

	"github.com/magefile/mage/mage"
)

func main() { os.Exit(mage.Main()) }
