package inventory

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestAttrs_AddSetDelForget(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := openTest(t, where)
		defer s.Close()
		for _, n := range []string{"w1", "w2"} {
			if err := s.Advance(ctx, "e", n, Provisioning, ""); err != nil {
				t.Fatal(err)
			}
		}
		change := func(host string, op AttrOp, key string, vs ...string) {
			t.Helper()
			if err := s.Update(ctx, func(tx *Tx) error { return tx.ChangeAttr("e", host, op, key, vs) }); err != nil {
				t.Fatal(err)
			}
		}
		change("w1", AttrAdd, "rack", "r1")
		change("w1", AttrAdd, "owner", "ada", "bob")
		change("w1", AttrAdd, "owner", "bob", "cy") // bob once
		change("w2", AttrSet, "rack", "r2")
		change("w2", AttrSet, "rack", "r3") // set replaces
		change("w1", AttrDel, "owner", "ada")
		evs, _ := s.Events(ctx, "e", "w1", 100)
		change("w1", AttrAdd, "rack", "r1") // already so: no event
		if again, _ := s.Events(ctx, "e", "w1", 100); len(again) != len(evs) {
			t.Errorf("adding a value a key has already recorded an event: %d → %d events", len(evs), len(again))
		}
		all, err := s.AllAttrs(ctx, "e")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string][]string{"w1": {"rack": {"r1"}, "owner": {"bob", "cy"}}, "w2": {"rack": {"r3"}}}
		if !reflect.DeepEqual(all, want) {
			t.Errorf("attributes: %v, want %v", all, want)
		}
		change("w1", AttrDel, "owner")
		if err := s.Update(ctx, func(tx *Tx) error { return tx.ChangeAttr("e", "w9", AttrAdd, "rack", []string{"r1"}) }); !errors.Is(err, ErrNotFound) {
			t.Errorf("an attribute of a host not recorded: %v, want ErrNotFound", err)
		}
		if err := s.Update(ctx, func(tx *Tx) error { return tx.ChangePool("e", "web", true, []string{"w1", "w2"}) }); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, func(tx *Tx) error { return tx.ChangePool("e", "canary", true, []string{"w1"}) }); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, func(tx *Tx) error { return tx.Forget("e", "w2", "test") }); err != nil {
			t.Fatal(err)
		}
		all, _ = s.AllAttrs(ctx, "e")
		pools, err := s.Pools(ctx, "e")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(all, map[string]map[string][]string{"w1": {"rack": {"r1"}}}) || !reflect.DeepEqual(pools, map[string][]string{"canary": {"w1"}, "web": {"w1"}}) {
			t.Errorf("after w1's owner deleted and w2 forgotten: attributes %v, pools %v", all, pools)
		}
	})
}
