package targets

import (
	"context"
	"io"

	"booted/internal/controller"
	"booted/internal/pkgs"
	"booted/internal/provider/registry"
	"booted/internal/service"
)

// SetupNeeds are what the default local environment needs on this machine.
func SetupNeeds() pkgs.Need {
	return pkgs.Merge(pkgs.Needs, controller.Needs, registry.Needs("local"), service.Needs, pkgs.Need{"ssh": "openssh-client"})
}

// Setup installs the Debian packages the default local environment needs
// (as root, with apt-get), or says exactly what to install, and checks
// that every file they are to bring is there.
func Setup(ctx context.Context, out io.Writer) error {
	need := SetupNeeds()
	if err := pkgs.Ensure(ctx, out, need); err != nil {
		return err
	}
	return pkgs.Verify(need)
}
