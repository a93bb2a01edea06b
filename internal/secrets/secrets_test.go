package secrets

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestEnvSecretAndDeployKey(t *testing.T) {
	dir := t.TempDir()
	s1, err := EnvSecret(filepath.Join(dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := EnvSecret(filepath.Join(dir, "secret"))
	if !bytes.Equal(s1, s2) || len(s1) != 64 {
		t.Errorf("secret not stable: %q %q", s1, s2)
	}
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
	for _, f := range []string{"secret", "id_ed25519"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (%v)", f, st.Mode().Perm(), err)
		}
	}
	os.WriteFile(filepath.Join(dir, "bad"), []byte("x"), 0o600)
	if _, err := EnvSecret(filepath.Join(dir, "bad")); err == nil {
		t.Error("short secret accepted")
	}
}
