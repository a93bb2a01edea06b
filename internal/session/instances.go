package session

import (
	"context"
	"encoding/base64"

	"booted/internal/config"
	"booted/internal/ec2backend"
	"booted/internal/ec2host"
	"booted/internal/inventory"
	"booted/internal/metadata"
	"booted/internal/provider"
	"booted/internal/provider/registry"
)

// EC2Envs is s as the EC2 backend's environment (ec2backend.Envs): every
// call on this one open session, a change under the environment's lock.
func (s *Session) EC2Envs() ec2backend.Envs { return ec2Envs{s} }

type ec2Envs struct{ s *Session }

func (x ec2Envs) View(ctx context.Context, fn func(ec2backend.Env) error) error {
	return fn(ec2Env{x.s})
}

func (x ec2Envs) Change(ctx context.Context, what string, fn func(ec2backend.Env) error) error {
	return x.s.Change(ctx, what+" "+x.s.Env.Name, func(s *Session) error { return fn(ec2Env{s}) })
}

// ec2Env is an open session as the EC2 backend sees it (ec2backend.Env).
type ec2Env struct{ s *Session }

func (e ec2Env) Config() *config.Env { return e.s.Env }
func (e ec2Env) Image() string {
	img, _ := registry.Image(e.s.Env.Provider.Type)
	return img
}
func (e ec2Env) Store() *inventory.Store { return e.s.Store }

func (e ec2Env) Nodes() ec2backend.Capacity {
	if a, err := e.s.Metal("run-instances"); err == nil && a.ForInstances() {
		return a
	}
	return nil
}

func (e ec2Env) Provider(name string) provider.Provider { return e.s.ProvOf(name) }
func (e ec2Env) Stop(ctx context.Context, name string) error {
	return e.s.Life().Stop(ctx, name)
}
func (e ec2Env) Delete(ctx context.Context, name string, force bool) error {
	return e.s.Life().Delete(ctx, name, force)
}
func (e ec2Env) Retire(ctx context.Context, name string, to inventory.State, why string) error {
	return e.s.Life().Retire(ctx, name, to, why)
}
func (e ec2Env) ForgetMetadata(addr string) { metadata.Remove(e.s.Ctl.MetadataDir(), addr) }

// RouteMetadata brings 169.254.169.254:80 on the links of the
// environment's hosts to the controller's nginx.
func (s *Session) RouteMetadata(ctx context.Context) error {
	return metadata.Route(ctx, s.Env.Name, metadata.HostLinks(s.Provs.All()), s.Env.CallbackAddr())
}

// WriteMetadata writes what the metadata service tells instance h (its
// address is known once it is built).
func (s *Session) WriteMetadata(_ context.Context, h inventory.Host) error {
	ud, _ := base64.StdEncoding.DecodeString(h.Attrs[ec2host.AttrUserData])
	return metadata.Write(s.Ctl.MetadataDir(), metadata.Instance{ID: ec2host.ID(h), Hostname: h.Name, Addr: h.Addr, Type: h.Attrs[ec2host.AttrType],
		Image: h.Attrs[ec2host.AttrImage], Zone: "booted-" + s.Env.Name, Reservation: h.Attrs[ec2host.AttrReservation],
		KeyName: h.Attrs[ec2host.AttrKey], PublicKey: h.Attrs[ec2host.AttrAuthorized], UserData: ud})
}
