package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"booted/internal/creds"
	"booted/internal/ec2api"
	"booted/internal/ec2backend"
	"booted/internal/metaladmin"
)

// withBackend opens ENV once and gives fn the EC2 backend on it: a
// launch waits for its instances (the API answers at once).
func (r *Runner) withBackend(ctx context.Context, envName string, fn func(s *session, b *ec2backend.Backend, pending *[]string) error) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		var pending []string
		b := &ec2backend.Backend{Envs: s.EC2Envs(), Launch: func(ids []string) { pending = append(pending, ids...) }}
		return fn(s, b, &pending)
	})
}

// instanceError makes an EC2 error a target's error.
func instanceError(err error) error {
	var e *ec2api.Error
	if errors.As(err, &e) {
		return fmt.Errorf("%s (%s)", e.Message, e.Code)
	}
	return err
}

func splitIDs(ids string) []string {
	var out []string
	for _, id := range strings.Split(ids, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// InstancesRun runs COUNT instances of IMAGE in ENV for BOOTED_USER (size
// BOOTED_INSTANCE_TYPE, key pair BOOTED_KEY_NAME, user data from the file
// BOOTED_USER_DATA, tags BOOTED_TAGS), waits until they are running and
// reachable, and lists them; one that fails says why and is terminated.
func (r *Runner) InstancesRun(ctx context.Context, envName, image string, count int) error {
	req := ec2api.RunRequest{ImageID: image, Type: r.InstanceType, KeyName: r.KeyName, Count: count, Tags: r.Tags}
	if count < 1 {
		return fmt.Errorf("instances:run %s %s %d: COUNT is at least 1", envName, image, count)
	}
	if r.UserData != "" {
		b, err := os.ReadFile(r.UserData)
		if err != nil {
			return fmt.Errorf("BOOTED_USER_DATA: %w", err)
		}
		if len(b) > 16<<10 {
			return fmt.Errorf("BOOTED_USER_DATA=%s: %d bytes; user data is at most 16384", r.UserData, len(b))
		}
		req.UserData = b
	}
	return r.withBackend(ctx, envName, func(s *session, b *ec2backend.Backend, pending *[]string) error {
		ins, err := b.Run(ctx, r.User, req)
		if err != nil {
			return instanceError(err)
		}
		launchErr := s.LaunchInstances(ctx, *pending)
		var ids []string
		for _, in := range ins {
			ids = append(ids, in.ID)
		}
		if err := r.describe(ctx, b, ids); err != nil {
			return err
		}
		return launchErr
	})
}

// InstancesDescribe lists BOOTED_USER's instances of ENV (EC2 states,
// addresses, reasons); JSON with BOOTED_OUTPUT=json.
func (r *Runner) InstancesDescribe(ctx context.Context, envName string) error {
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error { return r.describe(ctx, b, nil) })
}

type instanceRow struct {
	ID       string            `json:"instanceId"`
	State    string            `json:"state"`
	Type     string            `json:"instanceType"`
	Image    string            `json:"imageId"`
	Key      string            `json:"keyName"`
	Address  string            `json:"privateIpAddress"`
	Launched string            `json:"launchTime"`
	Tags     map[string]string `json:"tags"`
	Reason   string            `json:"stateReason,omitempty"`
}

func (r *Runner) describe(ctx context.Context, b *ec2backend.Backend, ids []string) error {
	ins, err := b.Describe(ctx, r.User, ids)
	if err != nil {
		return instanceError(err)
	}
	rows := []instanceRow{}
	for _, in := range ins {
		rows = append(rows, instanceRow{ID: in.ID, State: in.State, Type: in.Type, Image: in.ImageID, Key: in.KeyName, Address: in.Addr,
			Launched: in.Launched.UTC().Format(time.RFC3339), Tags: in.Tags, Reason: in.Reason})
	}
	return printRows(r, rows, []string{"INSTANCE", "STATE", "TYPE", "IMAGE", "KEY", "ADDRESS", "LAUNCHED", "TAGS", "REASON"}, func(x instanceRow) []string {
		var tags []string
		for k, v := range x.Tags {
			tags = append(tags, k+"="+v)
		}
		return []string{x.ID, x.State, x.Type, x.Image, orDash(x.Key), orDash(x.Address), x.Launched, orDash(strings.Join(tags, ",")), orDash(x.Reason)}
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// InstancesTerminate terminates BOOTED_USER's instances IDS (comma-separated) of ENV.
func (r *Runner) InstancesTerminate(ctx context.Context, envName, ids string) error {
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error {
		return r.printChanges(b.Terminate(ctx, r.User, splitIDs(ids)))
	})
}

// InstancesStop powers BOOTED_USER's instances IDS of ENV off.
func (r *Runner) InstancesStop(ctx context.Context, envName, ids string) error {
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error {
		return r.printChanges(b.Stop(ctx, r.User, splitIDs(ids)))
	})
}

// InstancesStart starts BOOTED_USER's stopped instances IDS of ENV and
// waits until they run.
func (r *Runner) InstancesStart(ctx context.Context, envName, ids string) error {
	return r.withBackend(ctx, envName, func(s *session, b *ec2backend.Backend, pending *[]string) error {
		if err := r.printChanges(b.Start(ctx, r.User, splitIDs(ids))); err != nil {
			return err
		}
		if len(*pending) == 0 {
			return nil
		}
		return s.LaunchInstances(ctx, *pending)
	})
}

// InstancesReboot restarts BOOTED_USER's instances IDS of ENV and waits
// until they run again.
func (r *Runner) InstancesReboot(ctx context.Context, envName, ids string) error {
	return r.withBackend(ctx, envName, func(s *session, b *ec2backend.Backend, pending *[]string) error {
		if err := b.Reboot(ctx, r.User, splitIDs(ids)); err != nil {
			return instanceError(err)
		}
		return s.LaunchInstances(ctx, *pending)
	})
}

// InstancesConsole prints the console of BOOTED_USER's instance ID of ENV.
func (r *Runner) InstancesConsole(ctx context.Context, envName, id string) error {
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error {
		out, err := b.ConsoleOutput(ctx, r.User, id)
		if err != nil {
			return instanceError(err)
		}
		_, err = r.Out.Write(out)
		return err
	})
}

func (r *Runner) printChanges(ch []ec2api.StateChange, err error) error {
	if err != nil {
		return instanceError(err)
	}
	for _, c := range ch {
		fmt.Fprintf(r.Out, "%s: %s → %s\n", c.ID, c.Previous, c.Current)
	}
	return nil
}

// KeypairCreate makes key pair NAME for BOOTED_USER in ENV and hands its
// private key over once, in the file NAME.pem of the working directory
// (0600, never overwritten; not printed): booted keeps only the public key.
func (r *Runner) KeypairCreate(ctx context.Context, envName, name string) error {
	file := name + ".pem"
	if strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("keypair:create %s %q: the private key goes to NAME.pem here; use a name without '/' or spaces", envName, name)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keypair:create %s %s: %w (it writes the private key there, and never over a file)", envName, name, err)
	}
	var kp ec2api.KeyPair
	err = r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) (err error) {
		kp, err = b.CreateKeyPair(ctx, r.User, name)
		return err
	})
	if err != nil {
		f.Close()
		os.Remove(file)
		return instanceError(err)
	}
	if _, err := f.WriteString(kp.Material); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(r.Out, "%s: key pair %s (%s); its private key is in %s (0600), the only copy\n", envName, kp.Name, kp.Fingerprint, file)
	return nil
}

// KeypairImport imports the public key in FILE as key pair NAME of
// BOOTED_USER in ENV.
func (r *Runner) KeypairImport(ctx context.Context, envName, name, file string) error {
	pub, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error {
		kp, err := b.ImportKeyPair(ctx, r.User, name, pub)
		if err != nil {
			return instanceError(err)
		}
		fmt.Fprintf(r.Out, "%s: key pair %s (%s)\n", envName, kp.Name, kp.Fingerprint)
		return nil
	})
}

// KeypairList lists BOOTED_USER's key pairs in ENV with their fingerprints.
func (r *Runner) KeypairList(ctx context.Context, envName string) error {
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error {
		kps, err := b.KeyPairs(ctx, r.User, nil)
		if err != nil {
			return instanceError(err)
		}
		if kps == nil {
			kps = []ec2api.KeyPair{}
		}
		return printRows(r, kps, []string{"NAME", "TYPE", "FINGERPRINT"}, func(k ec2api.KeyPair) []string { return []string{k.Name, k.Type, k.Fingerprint} })
	})
}

// KeypairDel deletes key pair NAME of BOOTED_USER in ENV (instances
// launched with it keep the key they were given).
func (r *Runner) KeypairDel(ctx context.Context, envName, name string) error {
	return r.withBackend(ctx, envName, func(_ *session, b *ec2backend.Backend, _ *[]string) error {
		return instanceError(b.DeleteKeyPair(ctx, r.User, name))
	})
}

// SystemsList lists the bare-metal nodes of ENV as systems (Metaleuca's
// describe-systems): who each is reserved for, its state, the instance on
// it and its owner.
func (r *Runner) SystemsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		a, err := s.Metal("systems:list")
		if err != nil {
			return err
		}
		rows, err := a.Systems(ctx)
		if err != nil {
			return err
		}
		return printRows(r, rows, metaladmin.SystemHeader, metaladmin.SystemRow.Cells)
	})
}

// SystemsReserve reserves bare-metal nodes NODES (comma-separated) of ENV
// for USER (Metaleuca's reserve-systems): only USER's instances run on
// them. A node another user's instance holds, or reserved for another
// user, is refused.
func (r *Runner) SystemsReserve(ctx context.Context, envName, nodes, user string) error {
	if err := creds.CheckUser(user); err != nil {
		return err
	}
	return r.reserve(ctx, envName, nodes, user)
}

// SystemsRelease gives bare-metal nodes NODES of ENV back to everyone.
func (r *Runner) SystemsRelease(ctx context.Context, envName, nodes string) error {
	return r.reserve(ctx, envName, nodes, "")
}

func (r *Runner) reserve(ctx context.Context, envName, nodes, user string) error {
	return r.withLock(ctx, envName, "systems:reserve "+envName+" "+nodes, func(s *session) error {
		a, err := s.Metal("systems:reserve")
		if err != nil {
			return err
		}
		done, err := a.Reserve(ctx, splitIDs(nodes), user)
		if err == nil {
			fmt.Fprintln(r.Out, strings.Join(done, "\n"))
		}
		return err
	})
}
