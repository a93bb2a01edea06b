// Package secrets makes and reads an environment's SSH deploy key, created
// on first use with mode 0600 under inventory/ENV/. (Hosts enroll with
// single-use tokens kept hashed in the inventory: there is no standing
// secret to keep.)
package secrets

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

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
