package targets

import (
	"context"
	"io"

	"booted/internal/controller"
	"booted/internal/pkgs"
	"booted/internal/provider/registry"
)

// Setup installs the Debian packages the default local environment needs
// (as root, with apt-get), or says exactly what to install.
func Setup(ctx context.Context, out io.Writer) error {
	return pkgs.Ensure(ctx, out, pkgs.Merge(controller.Needs, registry.Needs("local"), pkgs.Need{"ssh": "openssh-client"}))
}
