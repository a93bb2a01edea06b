// Command booted-monitor is the monitor daemon as a plain binary, for
// systemd: `booted-monitor ENV` does what `mage monitor:run ENV` does, with
// the same settings (BOOTED_ROOT, BOOTED_INVENTORY, BOOTED_DRY_RUN, ...).
package main

import (
	"context"
	"fmt"
	"os"

	"booted/internal/session"
	"booted/internal/settings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: booted-monitor ENV   (ENV is a file envs/ENV.yaml under BOOTED_ROOT)")
		os.Exit(2)
	}
	s, err := settings.FromEnviron()
	if err == nil {
		err = session.RunMonitor(context.Background(), session.Options{Settings: s, Out: os.Stdout, Err: os.Stderr}, os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "booted-monitor:", err)
		os.Exit(1)
	}
}
