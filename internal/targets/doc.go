// Package targets is what each Mage target does, in the order it does it.
// magefile.go only parses arguments and calls these functions, and the
// monitor daemon calls the same ones; they can be tested without Mage (and,
// through the hostIO seam and the in-memory provider, without root).
//
// A target opens an environment (its env file, inventory, provider and
// controller: a session), then walks the stages: the provider boots hosts,
// discovery learns them, liveness checks them, services are rolled out
// (package rollout), the load balancers follow. The rules each stage keeps
// live in the stage's package; settings come from BOOTED_* variables, read
// once (package settings).
package targets
