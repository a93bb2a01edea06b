// Package secrets makes and reads an environment's generated secrets: the
// HMAC secret that phone-home tokens are made with and the SSH deploy key.
// Both are created on first use with mode 0600 under inventory/ENV/.
package secrets

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// EnvSecret returns the secret stored at path, creating it if there is none.
func EnvSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("%s: secret too short; delete the file to make a new one (hosts booted with the old one will have to boot again)", path)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw)
	if err := createExclusive(path, []byte(s+"\n")); errors.Is(err, os.ErrExist) {
		return EnvSecret(path) // another process made it first
	} else if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// DeployKey returns the signer of the private key at path and its public key
// in authorized_keys format, generating an ed25519 key (and path.pub) if
// there is none.
func DeployKey(path, comment string) (ssh.Signer, []byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, comment)
		if err != nil {
			return nil, nil, err
		}
		if err := createExclusive(path, pem.EncodeToMemory(blk)); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, nil, err
		}
		return DeployKey(path, comment)
	}
	if err != nil {
		return nil, nil, err
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("deploy key %s: %w (it must be an unencrypted OpenSSH private key)", path, err)
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	pub = append(pub[:len(pub)-1], []byte(" "+comment+"\n")...)
	if _, err := os.Stat(path + ".pub"); errors.Is(err, os.ErrNotExist) {
		os.WriteFile(path+".pub", pub, 0o644)
	}
	return signer, pub, nil
}

// createExclusive writes a new file with mode 0600, failing with
// os.ErrExist if it is already there.
func createExclusive(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ErrExist
		}
		return err
	}
	return nil
}
