//go:build mage

// booted stands up, deploys, tests and scales environments of hosts (ENV is a file envs/ENV.yaml; options are BOOTED_* variables, see README.md).
package main

import (
	"context"
	"os"

	"github.com/magefile/mage/mg"

	"booted/internal/targets"
)

// Default is what `go run mage.go` runs.
var Default = Local

// Local brings up the default local environment (env:startAll local), installing the Debian packages it needs when run as root.
func Local(ctx context.Context) error {
	if err := targets.Setup(ctx, os.Stderr); err != nil {
		return err
	}
	return targets.FromEnviron().EnvStartAll(ctx, "local")
}

// Test installs what the tests need (as root, with apt-get) and runs every test with go test.
func Test(ctx context.Context) error { return targets.Test(ctx, os.Stdout) }

// Env brings whole environments up and down.
type Env mg.Namespace

// StartAll starts every host of every role of ENV, waits for each to phone home and checks it answers ping and SSH.
func (Env) StartAll(ctx context.Context, env string) error {
	return targets.FromEnviron().EnvStartAll(ctx, env)
}

// Hosts finds and checks the hosts of an environment.
type Hosts mg.Namespace

// List prints the inventory of ENV: name, role, state, address, host key. BOOTED_OUTPUT=json for JSON.
func (Hosts) List(ctx context.Context, env string) error {
	return targets.FromEnviron().HostsList(ctx, env)
}

// Logged records the hosts that phoned home to ENV's boot log, waiting for hosts still booting (up to the boot timeout).
func (Hosts) Logged(ctx context.Context, env string) error {
	return targets.FromEnviron().HostsLogged(ctx, env)
}

// Filter pings every discovered host of ENV and logs in with SSH against its pinned key; passing hosts are ready.
func (Hosts) Filter(ctx context.Context, env string) error {
	return targets.FromEnviron().HostsFilter(ctx, env)
}

// Clear forgets the discovered hosts of ENV; hosts:logged then reads the live boot log again from its start.
func (Hosts) Clear(ctx context.Context, env string) error {
	return targets.FromEnviron().HostsClear(ctx, env)
}

// Reset is hosts:clear, hosts:logged and hosts:filter in one: a hard reset of what booted knows of ENV's hosts.
func (Hosts) Reset(ctx context.Context, env string) error {
	return targets.FromEnviron().HostsReset(ctx, env)
}

// Image makes, starts, stops and deletes hosts.
type Image mg.Namespace

// Build makes host NAME of ENV (or several: NAME1,NAME2) without starting it.
func (Image) Build(ctx context.Context, env, name string) error {
	return targets.FromEnviron().ImageBuild(ctx, env, name)
}

// Start boots host NAME of ENV (or several: NAME1,NAME2), building it first if needed.
func (Image) Start(ctx context.Context, env, name string) error {
	return targets.FromEnviron().ImageStart(ctx, env, name)
}

// Stop powers off host NAME of ENV (or several: NAME1,NAME2); every process in it ends.
func (Image) Stop(ctx context.Context, env, name string) error {
	return targets.FromEnviron().ImageStop(ctx, env, name)
}

// Del deletes host NAME of ENV (or several: NAME1,NAME2) with its files; the inventory keeps it as terminated.
func (Image) Del(ctx context.Context, env, name string) error {
	return targets.FromEnviron().ImageDel(ctx, env, name)
}

// List lists the hosts the provider of ENV has made, powered on or off, with their inventory state.
func (Image) List(ctx context.Context, env string) error {
	return targets.FromEnviron().ImageList(ctx, env)
}

// Nginx runs the controller's nginx that hosts phone home to.
type Nginx mg.Namespace

// Restart starts a new boot log for ENV (the old one is kept with a timestamp suffix) and (re)starts the controller's nginx.
func (Nginx) Restart(ctx context.Context, env string) error {
	return targets.FromEnviron().NginxRestart(ctx, env)
}
