// Package ec2backend is the EC2 API's backend over an environment:
// instances (run, describe, stop, start, reboot, terminate, console, tags),
// key pairs, images and sizes, and the rules that keep tenants apart
// (each user sees and changes only their own instances and key pairs),
// dry runs and client tokens. What boots, stops and deletes
// hosts is the environment's (Env): the backend decides, the lifecycle
// acts.
package ec2backend

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"booted/internal/config"
	"booted/internal/creds"
	"booted/internal/ec2api"
	"booted/internal/ec2host"
	"booted/internal/files"
	"booted/internal/inventory"
	"booted/internal/keypairs"
	"booted/internal/provider"
)

// Env is an environment open for one call of the backend.
type Env interface {
	Config() *config.Env
	// Image is the image ID the environment's instances run ("": none).
	Image() string
	Store() *inventory.Store
	// Nodes are the bare-metal nodes instances run on; nil when instances
	// are new hosts named by their IDs.
	Nodes() Capacity
	// Provider is the provider of host name.
	Provider(name string) provider.Provider
	// Stop powers host name off (stopped); Delete removes what its
	// provider made; Retire moves it to a final state with why.
	Stop(ctx context.Context, name string) error
	Delete(ctx context.Context, name string, force bool) error
	Retire(ctx context.Context, name string, to inventory.State, why string) error
	// ForgetMetadata removes what the metadata service tells addr.
	ForgetMetadata(addr string)
}

// Capacity is where instances run when they take existing machines.
type Capacity interface {
	// Free returns the machines n new instances of user of size run on,
	// or InsufficientInstanceCapacity.
	Free(tx *inventory.Tx, user string, n int, size ec2api.InstanceType) ([]string, error)
}

// Envs opens the environment for a call: View without its lock (reads,
// and changes of the inventory alone, each in one transaction), Change
// under it (what touches hosts), what naming the operation for whoever
// waits on the lock.
type Envs interface {
	View(ctx context.Context, fn func(Env) error) error
	Change(ctx context.Context, what string, fn func(Env) error) error
}

// Types are the sizes of env's instances: the env file's, or booted's
// defaults; the first (the smallest) is the default.
func Types(env *config.Env) []ec2api.InstanceType {
	if len(env.Sizes) == 0 {
		return ec2api.DefaultInstanceTypes
	}
	var out []ec2api.InstanceType
	for name, sz := range env.Sizes {
		out = append(out, ec2api.InstanceType{Name: name, VCPUs: sz.CPUs, MemoryMiB: sz.MemoryMB, DiskGB: sz.DiskGB})
	}
	sort.Slice(out, func(i, j int) bool { // the smallest first: the default
		a, b := out[i], out[j]
		if a.MemoryMiB != b.MemoryMiB {
			return a.MemoryMiB < b.MemoryMiB
		}
		if a.VCPUs != b.VCPUs {
			return a.VCPUs < b.VCPUs
		}
		return a.Name < b.Name
	})
	return out
}

// Type is env's instance size name.
func Type(env *config.Env, name string) (ec2api.InstanceType, bool) {
	for _, t := range Types(env) {
		if t.Name == name {
			return t, true
		}
	}
	return ec2api.InstanceType{}, false
}

func (b *Backend) InstanceTypes(ctx context.Context, user string) ([]ec2api.InstanceType, error) {
	var out []ec2api.InstanceType
	err := b.Envs.View(ctx, func(e Env) error { out = Types(e.Config()); return nil })
	return out, err
}

func hexID(prefix string, n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)[:n]
}

// ec2State is what EC2 calls a host's state.
func ec2State(h inventory.Host) (state, reason string) {
	switch {
	case h.State.ComingUp():
		return "pending", ""
	case h.State.Up():
		return "running", ""
	case h.State == inventory.Draining:
		return "stopping", ""
	case h.State == inventory.Stopped:
		return "stopped", ""
	}
	return "terminated", h.Reason
}

func toInstance(h inventory.Host, zone string) ec2api.Instance {
	st, why := ec2State(h)
	in := ec2api.Instance{ID: ec2host.ID(h), ImageID: h.Attrs[ec2host.AttrImage], Type: h.Attrs[ec2host.AttrType], KeyName: h.Attrs[ec2host.AttrKey], Owner: h.Attrs[ec2host.AttrOwner],
		State: st, Reason: why, Reservation: h.Attrs[ec2host.AttrReservation], Zone: zone, Tags: map[string]string{}}
	if st == "pending" || st == "running" || st == "stopping" {
		in.Addr = h.Addr
	}
	in.Launched, _ = time.Parse(time.RFC3339, h.Attrs[ec2host.AttrLaunched])
	json.Unmarshal([]byte(h.Attrs[ec2host.AttrTags]), &in.Tags)
	if in.Tags == nil {
		in.Tags = map[string]string{}
	}
	return in
}

// Backend is the EC2 API's backend for one environment: instances are
// hosts of role ec2host.Role whose attributes hold what EC2 says of them;
// key pairs and client tokens are kept in the inventory.
type Backend struct {
	Envs Envs
	// Launch boots instances: in the background for the API server (it
	// answers pending at once, as EC2 does), collected for the targets
	// (which wait for it).
	Launch func(names []string)
}

// errDryRun rolls back a dry run's transaction (ec2api.DryRun): every
// check was made and nothing is kept.
var errDryRun = errors.New("dry run: nothing changed")

// dryRunDone is err with a dry run's rollback taken as success.
func dryRunDone(err error) error {
	if errors.Is(err, errDryRun) {
		return nil
	}
	return err
}

var _ ec2api.Backend = (*Backend)(nil)

func zone(e Env) string { return "booted-" + e.Config().Name }

// instances returns user's instances (all of them when ids is empty);
// another user's, or an unknown ID, is InvalidInstanceID.NotFound.
func instances(ctx context.Context, e Env, user string, ids []string) ([]inventory.Host, error) {
	hosts, err := e.Store().Hosts(ctx, e.Config().Name)
	if err != nil {
		return nil, err
	}
	mine := map[string]inventory.Host{}
	var all []inventory.Host
	for _, h := range hosts {
		if ec2host.Of(h, user) {
			mine[ec2host.ID(h)] = h
			all = append(all, h)
		}
	}
	if len(ids) == 0 {
		return all, nil
	}
	var out []inventory.Host
	var unknown []string
	for _, id := range ids {
		h, ok := mine[id]
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		out = append(out, h)
	}
	if len(unknown) > 0 {
		return nil, ec2api.Errorf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(unknown, ", "))
	}
	return out, nil
}

// clientRun is what a run's client token stands for: its reservation, a
// digest of its parameters and its hosts, in order, and when it ran.
type clientRun struct {
	Reservation, Request string
	Hosts                []string
	At                   time.Time
}

// clientTokenLife is how long a client token is remembered (a client
// retries within minutes; the AWS CLI sends a new token with every run,
// so they must not pile up for ever).
const clientTokenLife = 24 * time.Hour

// forgetOldTokens drops user's client tokens older than clientTokenLife.
func forgetOldTokens(tx *inventory.Tx, env, user string, now time.Time) error {
	all, err := tx.List(env, clientTokenKey(user, ""))
	if err != nil {
		return err
	}
	for key, raw := range all {
		var c clientRun
		if json.Unmarshal(raw, &c) == nil && now.Sub(c.At) < clientTokenLife {
			continue
		}
		if err := tx.Delete(env, key); err != nil {
			return err
		}
	}
	return nil
}

func clientTokenKey(user, token string) string { return "clienttoken/" + user + "/" + token }

// runSum is a digest of a run's parameters, to tell a retry from a reuse
// of its client token.
func runSum(req ec2api.RunRequest) string {
	req.ClientToken = ""
	b, _ := json.Marshal(req)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (b *Backend) Run(ctx context.Context, user string, req ec2api.RunRequest) ([]ec2api.Instance, error) {
	var out []ec2api.Instance
	var ids []string
	retried := false
	err := b.Envs.View(ctx, func(e Env) error {
		if want := e.Image(); want == "" {
			return ec2api.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist (the %s provider of this environment makes no instances)", req.ImageID, e.Config().Provider.Type)
		} else if req.ImageID != want {
			return ec2api.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist (this environment's instances run %s)", req.ImageID, want)
		}
		if req.Type == "" {
			req.Type = Types(e.Config())[0].Name
		}
		size, ok := Type(e.Config(), req.Type)
		if !ok {
			var names []string
			for _, t := range Types(e.Config()) {
				names = append(names, t.Name)
			}
			return ec2api.Errorf("InvalidParameterValue", "Invalid value '%s' for InstanceType (this environment has %s)", req.Type, strings.Join(names, ", "))
		}
		if req.Count > 20 {
			return ec2api.Errorf("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of 20 allows", req.Count)
		}
		authorized := ""
		if req.KeyName != "" {
			var kp keypairs.KeyPair
			found, err := e.Store().Get(ctx, e.Config().Name, keyPairKey(user, req.KeyName), &kp)
			if err != nil {
				return err
			}
			if !found {
				return ec2api.Errorf("InvalidKeyPair.NotFound", "The key pair '%s' does not exist", req.KeyName)
			}
			authorized = kp.PublicKey
		}
		tags := []byte("{}") // no tags: an empty set, not null
		if len(req.Tags) > 0 {
			tags, _ = json.Marshal(req.Tags)
		}
		now := time.Now().UTC().Truncate(time.Second)
		res := hexID("r-", 17)
		return e.Store().Update(ctx, func(tx *inventory.Tx) error {
			if req.ClientToken != "" { // a retry answers the first run's instances
				var first clientRun
				if found, err := tx.Get(e.Config().Name, clientTokenKey(user, req.ClientToken), &first); err != nil {
					return err
				} else if found {
					if first.Request != runSum(req) {
						return ec2api.Errorf("IdempotentParameterMismatch", "The client token %q was used by a run of other parameters: give a new one", req.ClientToken)
					}
					for _, name := range first.Hosts {
						if h, err := tx.Host(e.Config().Name, name); err == nil && h.Attrs[ec2host.AttrOwner] == user && h.Attrs[ec2host.AttrReservation] == first.Reservation {
							out = append(out, toInstance(h, zone(e)))
						}
					}
					retried = true
					return nil
				}
			}
			if err := quota(e, tx, user, req.Count, size); err != nil {
				return err
			}
			names, err := hostsFor(e, tx, user, req.Count, size)
			if err != nil {
				return err
			}
			if req.ClientToken != "" {
				if err := forgetOldTokens(tx, e.Config().Name, user, now); err != nil {
					return err
				}
				if err := tx.Put(e.Config().Name, clientTokenKey(user, req.ClientToken), clientRun{Reservation: res, Request: runSum(req), Hosts: names, At: now}); err != nil {
					return err
				}
			}
			for _, name := range names {
				id, exists := name, false
				if old, err := tx.Host(e.Config().Name, name); err == nil { // a bare-metal node, taken again
					id, exists = hexID("i-", 17), true
					if old.State == inventory.Terminated {
						if err := tx.Advance(e.Config().Name, name, inventory.Requested, ""); err != nil {
							return err
						}
					}
				} else if !strings.HasPrefix(name, "i-") {
					id = hexID("i-", 17) // a bare-metal node taken the first time
				}
				err := tx.Modify(e.Config().Name, name, func(h *inventory.Host) error {
					h.Role, h.Provider = ec2host.Role, e.Config().ProviderOf(name)
					if !exists {
						h.State = inventory.Requested
					}
					h.Attrs = map[string]string{ec2host.AttrOwner: user, ec2host.AttrImage: req.ImageID, ec2host.AttrType: req.Type, ec2host.AttrKey: req.KeyName,
						ec2host.AttrAuthorized: authorized, ec2host.AttrReservation: res, ec2host.AttrLaunched: now.Format(time.RFC3339), ec2host.AttrTags: string(tags),
						ec2host.AttrUserData: base64.StdEncoding.EncodeToString(req.UserData)}
					if id != name {
						h.Attrs[ec2host.AttrID] = id
					}
					return nil
				})
				if err != nil {
					return err
				}
				if err := tx.Record(inventory.Event{Env: e.Config().Name, Host: name, Kind: "instance-requested", Detail: fmt.Sprintf("%s by %s: %s %s", id, user, req.ImageID, req.Type)}); err != nil {
					return err
				}
				h, _ := tx.Host(e.Config().Name, name)
				ids = append(ids, name)
				out = append(out, toInstance(h, zone(e)))
			}
			if ec2api.DryRun(ctx) {
				return errDryRun
			}
			return nil
		})
	})
	if ec2api.DryRun(ctx) {
		return out, dryRunDone(err)
	}
	if err != nil {
		return nil, err
	}
	if !retried {
		b.Launch(ids)
	}
	return out, nil
}

// hostsFor returns the hosts n new instances of user run on: new hosts,
// named by their instance IDs, or the free bare-metal nodes when instances
// run on bare metal.
func hostsFor(e Env, tx *inventory.Tx, user string, n int, size ec2api.InstanceType) ([]string, error) {
	if nodes := e.Nodes(); nodes != nil {
		return nodes.Free(tx, user, n, size)
	}
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, hexID("i-", 17))
	}
	return out, nil
}

func (b *Backend) Describe(ctx context.Context, user string, ids []string) ([]ec2api.Instance, error) {
	var out []ec2api.Instance
	err := b.Envs.View(ctx, func(e Env) error {
		hosts, err := instances(ctx, e, user, ids)
		for _, h := range hosts {
			out = append(out, toInstance(h, zone(e)))
		}
		return err
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Launched.Equal(out[j].Launched) {
			return out[i].Launched.Before(out[j].Launched)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

func (b *Backend) Terminate(ctx context.Context, user string, ids []string) ([]ec2api.StateChange, error) {
	var out []ec2api.StateChange
	err := b.Envs.Change(ctx, "instances:terminate", func(e Env) error {
		hosts, err := instances(ctx, e, user, ids)
		if err != nil || ec2api.DryRun(ctx) {
			return err
		}
		for _, h := range hosts {
			prev, _ := ec2State(h)
			if h.State != inventory.Terminated {
				if err := e.Delete(ctx, h.Name, true); err != nil && !errors.Is(err, provider.ErrNoInstance) {
					return fmt.Errorf("instance %s: %w", h.Name, err)
				}
				if err := e.Retire(ctx, h.Name, inventory.Terminated, "terminated by "+user); err != nil {
					return err
				}
				e.ForgetMetadata(h.Addr)
			}
			out = append(out, ec2api.StateChange{ID: ec2host.ID(h), Previous: prev, Current: "terminated"})
		}
		return nil
	})
	return out, err
}

func keyPairKey(user, name string) string { return "keypair/" + user + "/" + name }

func keyPairID(kp keypairs.KeyPair) string {
	return "key-" + hex.EncodeToString([]byte(kp.Fingerprint))[:17]
}

func (b *Backend) CreateKeyPair(ctx context.Context, user, name string) (ec2api.KeyPair, error) {
	kp, priv, err := keypairs.Create(user, name, time.Now())
	if err != nil {
		return ec2api.KeyPair{}, ec2api.Errorf("InvalidParameterValue", "KeyName: %v", err)
	}
	if err := b.putKeyPair(ctx, kp); err != nil {
		return ec2api.KeyPair{}, err
	}
	return ec2api.KeyPair{ID: keyPairID(kp), Name: kp.Name, Fingerprint: kp.Fingerprint, Type: kp.Type, Material: string(priv)}, nil
}

func (b *Backend) ImportKeyPair(ctx context.Context, user, name string, material []byte) (ec2api.KeyPair, error) {
	kp, err := keypairs.Import(user, name, material, time.Now())
	if err != nil {
		return ec2api.KeyPair{}, ec2api.Errorf("InvalidKeyPair.Format", "%v", err)
	}
	if err := b.putKeyPair(ctx, kp); err != nil {
		return ec2api.KeyPair{}, err
	}
	return ec2api.KeyPair{ID: keyPairID(kp), Name: kp.Name, Fingerprint: kp.Fingerprint, Type: kp.Type}, nil
}

func (b *Backend) putKeyPair(ctx context.Context, kp keypairs.KeyPair) error {
	return b.Envs.View(ctx, func(e Env) error {
		return e.Store().Update(ctx, func(tx *inventory.Tx) error {
			var old keypairs.KeyPair
			if found, err := tx.Get(e.Config().Name, keyPairKey(kp.Owner, kp.Name), &old); err != nil {
				return err
			} else if found {
				return ec2api.Errorf("InvalidKeyPair.Duplicate", "The keypair '%s' already exists.", kp.Name)
			}
			if ec2api.DryRun(ctx) {
				return nil
			}
			return tx.Put(e.Config().Name, keyPairKey(kp.Owner, kp.Name), kp)
		})
	})
}

func (b *Backend) KeyPairs(ctx context.Context, user string, names []string) ([]ec2api.KeyPair, error) {
	var out []ec2api.KeyPair
	err := b.Envs.View(ctx, func(e Env) error {
		return e.Store().View(ctx, func(tx *inventory.Tx) error {
			all, err := tx.List(e.Config().Name, keyPairKey(user, ""))
			if err != nil {
				return err
			}
			byName := map[string]keypairs.KeyPair{}
			var order []string
			for _, raw := range all {
				var kp keypairs.KeyPair
				if json.Unmarshal(raw, &kp) == nil {
					byName[kp.Name] = kp
					order = append(order, kp.Name)
				}
			}
			sort.Strings(order)
			if len(names) > 0 {
				order = names
			}
			for _, n := range order {
				kp, ok := byName[n]
				if !ok {
					return ec2api.Errorf("InvalidKeyPair.NotFound", "The key pair '%s' does not exist", n)
				}
				out = append(out, ec2api.KeyPair{ID: keyPairID(kp), Name: kp.Name, Fingerprint: kp.Fingerprint, Type: kp.Type})
			}
			return nil
		})
	})
	return out, err
}

func (b *Backend) DeleteKeyPair(ctx context.Context, user, name string) error {
	if name == "" {
		return ec2api.Errorf("MissingParameter", "The request must contain the parameter KeyName")
	}
	return b.Envs.View(ctx, func(e Env) error {
		if ec2api.DryRun(ctx) {
			return nil // EC2 deletes a key pair that does not exist without complaint
		}
		return e.Store().Update(ctx, func(tx *inventory.Tx) error { return tx.Delete(e.Config().Name, keyPairKey(user, name)) })
	})
}

// Secrets reads the environment's API users (inventory/ENV/creds).
type Secrets struct{ creds.Store }

func (s Secrets) Secret(id string) (string, string, error) {
	c, err := s.Lookup(id)
	return c.User, c.Secret, err
}

// change applies do to each of user's instances ids under the
// environment's lock and says what each went from and to, and the names of
// the instances (start and reboot boot them again after it). A dry run
// makes the checks alone.
func (b *Backend) change(ctx context.Context, what, user string, ids []string, do func(e Env, h inventory.Host) error) ([]ec2api.StateChange, []string, error) {
	var out []ec2api.StateChange
	var names []string
	err := b.Envs.Change(ctx, what, func(e Env) error {
		hosts, err := instances(ctx, e, user, ids)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.State == inventory.Terminated {
				return ec2api.Errorf("IncorrectInstanceState", "The instance '%s' is terminated", h.Name)
			}
		}
		if ec2api.DryRun(ctx) {
			return nil
		}
		for _, h := range hosts {
			prev, _ := ec2State(h)
			if err := do(e, h); err != nil {
				return fmt.Errorf("instance %s: %w", h.Name, err)
			}
			now, _ := e.Store().Host(ctx, e.Config().Name, h.Name)
			cur, _ := ec2State(now)
			out = append(out, ec2api.StateChange{ID: ec2host.ID(h), Previous: prev, Current: cur})
			names = append(names, h.Name)
		}
		return nil
	})
	return out, names, err
}

func (b *Backend) Stop(ctx context.Context, user string, ids []string) ([]ec2api.StateChange, error) {
	ch, _, err := b.change(ctx, "instances:stop", user, ids, func(e Env, h inventory.Host) error { return e.Stop(ctx, h.Name) })
	return ch, err
}

func (b *Backend) Start(ctx context.Context, user string, ids []string) ([]ec2api.StateChange, error) {
	ch, names, err := b.change(ctx, "instances:start", user, ids, func(e Env, h inventory.Host) error { return nil })
	if err != nil {
		return nil, err
	}
	var start []string
	for i := range ch {
		if ch[i].Current == "stopped" {
			ch[i].Current = "pending"
			start = append(start, names[i])
		}
	}
	if len(start) > 0 {
		b.Launch(start)
	}
	return ch, nil
}

func (b *Backend) Reboot(ctx context.Context, user string, ids []string) error {
	_, names, err := b.change(ctx, "instances:reboot", user, ids, func(e Env, h inventory.Host) error { return e.Stop(ctx, h.Name) })
	if err != nil || len(names) == 0 {
		return err
	}
	b.Launch(names)
	return nil
}

// ConsoleOutput is the tail (64 KiB) of the instance's console log.
func (b *Backend) ConsoleOutput(ctx context.Context, user, id string) ([]byte, error) {
	var out []byte
	err := b.Envs.View(ctx, func(e Env) error {
		hosts, err := instances(ctx, e, user, []string{id})
		if err != nil {
			return err
		}
		name := hosts[0].Name
		c, ok := e.Provider(name).(provider.Console)
		if !ok {
			return ec2api.Errorf("UnsupportedOperation", "the %s provider keeps no console", e.Config().ProviderOf(name))
		}
		// EC2 gives the last 64 KB; read no more, and not through a link.
		data, err := files.Tail(c.ConsoleLog(name), 64<<10)
		if err != nil && !errors.Is(err, fs.ErrNotExist) { // none yet: empty, as EC2's
			return fmt.Errorf("instance %s: console: %w", hosts[0].Name, err)
		}
		out = data
		return nil
	})
	return out, err
}

func (b *Backend) CreateTags(ctx context.Context, user string, ids []string, tags map[string]string) error {
	err := b.Envs.View(ctx, func(e Env) error {
		hosts, err := instances(ctx, e, user, ids)
		if err != nil {
			return err
		}
		return e.Store().Update(ctx, func(tx *inventory.Tx) error {
			for _, host := range hosts {
				id := ec2host.ID(host)
				err := tx.Modify(e.Config().Name, host.Name, func(h *inventory.Host) error {
					cur := map[string]string{}
					json.Unmarshal([]byte(h.Attrs[ec2host.AttrTags]), &cur)
					if cur == nil { // "null": an instance run without tags, before they were kept as {}
						cur = map[string]string{}
					}
					for k, v := range tags {
						cur[k] = v
					}
					if len(cur) > 50 {
						return ec2api.Errorf("TagLimitExceeded", "instance %s would have %d tags; at most 50", id, len(cur))
					}
					j, _ := json.Marshal(cur)
					h.Attrs[ec2host.AttrTags] = string(j)
					return nil
				})
				if err != nil {
					return err
				}
			}
			if ec2api.DryRun(ctx) {
				return errDryRun
			}
			return nil
		})
	})
	return dryRunDone(err)
}

func (b *Backend) Images(ctx context.Context, user string) ([]ec2api.Image, error) {
	var out []ec2api.Image
	err := b.Envs.View(ctx, func(e Env) error {
		if id := e.Image(); id != "" {
			desc := "the " + e.Config().Provider.Type + " hosts of environment " + e.Config().Name
			out = append(out, ec2api.Image{ID: id, Name: e.Config().Provider.Type, Description: desc})
		}
		return nil
	})
	return out, err
}

// quota refuses a run that would take user past the env file's api.quota:
// the instances user holds (neither terminated nor failed) and their
// vCPUs, counted in the run's transaction, as EC2's limits are.
func quota(e Env, tx *inventory.Tx, user string, n int, size ec2api.InstanceType) error {
	q := e.Config().API.Quota
	if q.Instances == 0 && q.VCPUs == 0 { // an env made without Load: none
		return nil
	}
	hosts, err := tx.Hosts(e.Config().Name)
	if err != nil {
		return err
	}
	count, vcpus := 0, 0
	for _, h := range hosts {
		if h.Attrs[ec2host.AttrOwner] != user || !h.State.InUse() {
			continue
		}
		count++
		if t, ok := Type(e.Config(), h.Attrs[ec2host.AttrType]); ok {
			vcpus += t.VCPUs
		}
	}
	if q.Instances > 0 && count+n > q.Instances {
		return ec2api.Errorf("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of %d allows: %d in use (api.quota.instances in the env file)", n, q.Instances, count)
	}
	if q.VCPUs > 0 && vcpus+n*size.VCPUs > q.VCPUs {
		return ec2api.Errorf("VcpuLimitExceeded", "You have requested more vCPU capacity (%d of %s) than your current vCPU limit of %d allows: %d in use (api.quota.vcpus in the env file)", n*size.VCPUs, size.Name, q.VCPUs, vcpus)
	}
	return nil
}
