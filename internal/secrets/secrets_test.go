package secrets

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestDeployKey(t *testing.T) {
	dir := t.TempDir()
	sig, pub, err := DeployKey(filepath.Join(dir, "id_ed25519"), "booted@test")
	if err != nil {
		t.Fatal(err)
	}
	sig2, _, err := DeployKey(filepath.Join(dir, "id_ed25519"), "booted@test")
	if err != nil || !bytes.Equal(sig.PublicKey().Marshal(), sig2.PublicKey().Marshal()) {
		t.Errorf("key not stable: %v", err)
	}
	if !bytes.HasPrefix(pub, []byte("ssh-ed25519 ")) {
		t.Errorf("pub = %q", pub)
	}
	for _, f := range []string{"id_ed25519"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (%v)", f, st.Mode().Perm(), err)
		}
	}
}
