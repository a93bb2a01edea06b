// Package provider defines what booted needs from a way of making hosts
// (local namespaces, VirtualBox VMs, bare metal, existing machines). Each
// implementation lives in a subpackage and passes the conformance suite in
// provider/providertest.
package provider

import (
	"context"
	"errors"
)

// Spec is what a provider needs to make one host.
type Spec struct {
	Name string
	Role string
	// PhoneHome is the host's rendered phone-home script; the host runs it
	// at the end of its install or, for light hosts, at every boot.
	PhoneHome []byte
	// AuthorizedKey is the deploy public key, in authorized_keys format.
	AuthorizedKey []byte
}

// Instance is a host as the provider sees it.
type Instance struct {
	Name string `json:"name"`
	// ID is the provider's own name for it (namespace, VM name, BMC address).
	ID    string `json:"id"`
	Addr  string `json:"ip"`
	MAC   string `json:"mac"`
	State State  `json:"state"`
}

// State is whether an instance runs.
type State string

// Instance states.
const (
	Running State = "running"
	Off     State = "stopped"
)

// Errors providers return.
var (
	// ErrNoInstance is returned for a host the provider has not made.
	ErrNoInstance = errors.New("no such instance")
	// ErrUnsupported is returned for what a provider cannot do (powering
	// off a static machine, say).
	ErrUnsupported = errors.New("not supported by this provider")
)

// Provider makes, starts, stops and deletes hosts. Every method is
// idempotent: building what exists, starting what runs or stopping what is
// stopped does nothing and succeeds.
type Provider interface {
	// Build makes the host (disk, network identity) without starting it.
	Build(ctx context.Context, s Spec) (Instance, error)
	// Start boots the host, building it first if needed.
	Start(ctx context.Context, s Spec) (Instance, error)
	// Stop powers the host off; every process in it ends.
	Stop(ctx context.Context, name string) error
	// Delete stops the host and removes all that Build made.
	Delete(ctx context.Context, name string) error
	// List returns every host of the environment the provider has made.
	List(ctx context.Context) ([]Instance, error)
}

// DeleteAll deletes every host p lists, going on past failures.
func DeleteAll(ctx context.Context, p Provider) error {
	insts, err := p.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range insts {
		errs = append(errs, p.Delete(ctx, in.Name))
	}
	return errors.Join(errs...)
}
