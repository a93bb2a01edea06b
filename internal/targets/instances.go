package targets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"booted/internal/config"
	"booted/internal/ec2backend"
	"booted/internal/ec2host"
	"booted/internal/inventory"
	"booted/internal/metadata"
	"booted/internal/provider"
	"booted/internal/provider/registry"
)

// ec2Envs opens environment env for each call of the EC2 backend
// (ec2backend.Envs): the session is the targets', under the environment's
// lock for what changes hosts.
type ec2Envs struct {
	r   *Runner
	env string
}

func (x ec2Envs) View(ctx context.Context, fn func(ec2backend.Env) error) error {
	return x.r.withEnv(ctx, x.env, func(s *session) error { return fn(ec2Env{s}) })
}

func (x ec2Envs) Change(ctx context.Context, what string, fn func(ec2backend.Env) error) error {
	return x.r.withLock(ctx, x.env, what+" "+x.env, func(s *session) error { return fn(ec2Env{s}) })
}

// ec2Env is an open session as the EC2 backend sees it (ec2backend.Env).
type ec2Env struct{ s *session }

func (e ec2Env) Config() *config.Env { return e.s.env }
func (e ec2Env) Image() string {
	img, _ := registry.Image(e.s.env.Provider.Type)
	return img
}
func (e ec2Env) Store() *inventory.Store { return e.s.store }

func (e ec2Env) Nodes() ec2backend.Capacity {
	if a, err := e.s.metal("run-instances"); err == nil && a.ForInstances() {
		return a
	}
	return nil
}

func (e ec2Env) Provider(name string) provider.Provider { return e.s.provOf(name) }
func (e ec2Env) Stop(ctx context.Context, name string) error {
	return e.s.life().Stop(ctx, name)
}
func (e ec2Env) Delete(ctx context.Context, name string, force bool) error {
	return e.s.life().Delete(ctx, name, force)
}
func (e ec2Env) Retire(ctx context.Context, name string, to inventory.State, why string) error {
	return e.s.life().Retire(ctx, name, to, why)
}
func (e ec2Env) ForgetMetadata(addr string) { metadata.Remove(e.s.ctl.MetadataDir(), addr) }

// pendingInstances are the env's instances whose launch has not ended
// (requested, provisioning, booting, booted).
func (r *Runner) pendingInstances(ctx context.Context, envName string) ([]string, error) {
	var out []string
	err := r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.store.Hosts(ctx, s.env.Name)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.State.ComingUp() && h.Role == ec2host.Role {
				out = append(out, h.Name)
			}
		}
		return nil
	})
	return out, err
}

// launchInstances boots the instances ids and follows them to ready (SSH
// with the pinned key); one that does not get there is deleted and left
// terminated with the reason: nothing half-made.
func (r *Runner) launchInstances(ctx context.Context, envName string, ids []string) error {
	return r.withLock(ctx, envName, "instances:run "+envName, func(s *session) error {
		if err := s.startController(ctx); err != nil {
			return err
		}
		if err := s.routeMetadata(ctx); err != nil {
			return err
		}
		var errs []error
		failed := map[string]string{} // why an instance could not even be started
		for _, id := range ids {
			if err := s.life().Launch(ctx, id, s.writeMetadata); err != nil {
				failed[id] = err.Error()
			}
		}
		if err := s.logged(ctx); err != nil {
			return err
		}
		if err := s.filter(ctx); err != nil {
			return err
		}
		for _, id := range ids {
			h, err := s.store.Host(ctx, s.env.Name, id)
			if err != nil {
				return err
			}
			if h.State.Up() {
				continue
			}
			why := h.Reason
			if f, ok := failed[id]; ok {
				why = f
			} else if why == "" {
				why = "not ready: " + string(h.State)
			}
			s.life().Delete(context.WithoutCancel(ctx), id, true)
			s.advance(context.WithoutCancel(ctx), id, inventory.Failed, why)
			if err := s.life().Retire(context.WithoutCancel(ctx), id, inventory.Terminated, "launch failed: "+why); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, fmt.Errorf("instance %s: %s", id, why))
		}
		return errors.Join(errs...)
	})
}

// routeMetadata brings 169.254.169.254:80 on the links of the
// environment's hosts to the controller's nginx.
func (s *session) routeMetadata(ctx context.Context) error {
	return metadata.Route(ctx, s.env.Name, metadata.HostLinks(s.provs.All()), s.env.CallbackAddr())
}

// writeMetadata writes what the metadata service tells instance h (its
// address is known once it is built).
func (s *session) writeMetadata(_ context.Context, h inventory.Host) error {
	ud, _ := base64.StdEncoding.DecodeString(h.Attrs[ec2host.AttrUserData])
	return metadata.Write(s.ctl.MetadataDir(), metadata.Instance{ID: ec2host.ID(h), Hostname: h.Name, Addr: h.Addr, Type: h.Attrs[ec2host.AttrType],
		Image: h.Attrs[ec2host.AttrImage], Zone: "booted-" + s.env.Name, Reservation: h.Attrs[ec2host.AttrReservation],
		KeyName: h.Attrs[ec2host.AttrKey], PublicKey: h.Attrs[ec2host.AttrAuthorized], UserData: ud})
}
