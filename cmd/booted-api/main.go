// Command booted-api is the EC2 API server as a plain binary, for systemd:
// `booted-api ENV` does what `mage api:serve ENV` does, with the same
// settings (BOOTED_ROOT, BOOTED_INVENTORY, BOOTED_API_LISTEN, ...). SIGINT
// or SIGTERM stops it cleanly: launches in flight end failed or
// terminated, and the next start resumes those still pending.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"booted/internal/session"
	"booted/internal/settings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: booted-api ENV   (ENV is a file envs/ENV.yaml under BOOTED_ROOT; users come from `mage creds:create ENV USER`)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := settings.FromEnviron()
	if err == nil {
		err = session.ServeAPI(ctx, session.Options{Settings: s, Out: os.Stdout, Err: os.Stderr}, os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "booted-api:", err)
		os.Exit(1)
	}
}
