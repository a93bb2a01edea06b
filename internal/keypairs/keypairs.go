// Package keypairs makes and reads the SSH key pairs users launch
// instances with (EC2's CreateKeyPair and ImportKeyPair). booted keeps the
// public key only: a created pair's private key is handed to its user once.
package keypairs

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// KeyPair is one user's public key, by name.
type KeyPair struct {
	Name        string    `json:"name"`
	Owner       string    `json:"owner"`
	Fingerprint string    `json:"fingerprint"`
	Type        string    `json:"type"`
	PublicKey   string    `json:"publicKey"` // authorized_keys form
	Created     time.Time `json:"created"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9 ._:/@-]{1,255}$`)

// CheckName refuses a key pair name EC2 would refuse (1–255 ASCII
// letters, digits, spaces and ._-:/@).
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("key name %q: use 1 to 255 letters, digits, spaces and ._-:/@", name)
	}
	return nil
}

// Create makes a new ed25519 key pair named name for owner: the record
// booted keeps, and the private key in OpenSSH form (shown to its user
// once, never stored).
func Create(owner, name string, now time.Time) (KeyPair, []byte, error) {
	if err := CheckName(name); err != nil {
		return KeyPair{}, nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		return KeyPair{}, nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return KeyPair{}, nil, err
	}
	return record(owner, name, sp, now), pem.EncodeToMemory(block), nil
}

// Import reads a public key (authorized_keys form, as ssh-keygen writes
// it; RSA of 2048 bits or more, ECDSA or ed25519) for owner.
func Import(owner, name string, material []byte, now time.Time) (KeyPair, error) {
	if err := CheckName(name); err != nil {
		return KeyPair{}, err
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(material)
	if err != nil {
		return KeyPair{}, fmt.Errorf("public key material: not an OpenSSH public key (%v): give the .pub file ssh-keygen writes", err)
	}
	if ck, ok := pk.(ssh.CryptoPublicKey); ok && pk.Type() == ssh.KeyAlgoRSA {
		if k, ok := ck.CryptoPublicKey().(interface{ Size() int }); ok && k.Size()*8 < 2048 {
			return KeyPair{}, fmt.Errorf("public key material: an RSA key of %d bits; use 2048 or more", k.Size()*8)
		}
	}
	switch pk.Type() {
	case ssh.KeyAlgoRSA, ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
	default:
		return KeyPair{}, fmt.Errorf("public key material: %s keys are not accepted (use ed25519, ECDSA or RSA)", pk.Type())
	}
	return record(owner, name, pk, now), nil
}

func record(owner, name string, pk ssh.PublicKey, now time.Time) KeyPair {
	typ := "ed25519"
	if strings.HasPrefix(pk.Type(), "ssh-rsa") {
		typ = "rsa"
	} else if strings.HasPrefix(pk.Type(), "ecdsa") {
		typ = "ecdsa"
	}
	return KeyPair{Name: name, Owner: owner, Fingerprint: ssh.FingerprintSHA256(pk), Type: typ,
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))), Created: now.UTC().Truncate(time.Second)}
}
