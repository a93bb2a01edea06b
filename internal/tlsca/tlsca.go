// Package tlsca makes an environment's own certificate authorities and the
// server certificates they sign (NATS's, the APIs'): the CA once, kept
// after; a server certificate made again when a name it must carry is new
// to it, when it no longer checks against the CA, or within 30 days of its
// end. Private keys are written 0600 and never printed.
package tlsca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"booted/internal/atomicfile"
)

// Files are a CA and the server certificate it signed, in Dir: ca.pem
// (0644, what clients trust), ca-key.pem, server.pem, server-key.pem.
type Files struct{ Dir string }

// CA is the authority's certificate, the file clients are given.
func (f Files) CA() string { return filepath.Join(f.Dir, "ca.pem") }

// Cert is the server's certificate.
func (f Files) Cert() string { return filepath.Join(f.Dir, "server.pem") }

// Key is the server's private key (0600).
func (f Files) Key() string { return filepath.Join(f.Dir, "server-key.pem") }

func (f Files) caKey() string { return filepath.Join(f.Dir, "ca-key.pem") }

// renewBefore is how long before its end a server certificate is made again.
const renewBefore = 30 * 24 * time.Hour

// Ensure makes the CA named name (once) and a server certificate for hosts
// (names or addresses; localhost and 127.0.0.1 always), good for server
// and client use, valid for validity.
func (f Files) Ensure(name string, hosts []string, validity time.Duration) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	ca, caKey, err := f.authority(name)
	if err != nil {
		return err
	}
	hosts = append(append([]string(nil), hosts...), "localhost", "127.0.0.1")
	if cb, err := os.ReadFile(f.Cert()); err == nil {
		if c, _ := x509.ParseCertificate(pemBytes(cb)); c != nil && covers(c, hosts) && c.CheckSignatureFrom(ca) == nil && time.Until(c.NotAfter) > renewBefore {
			if _, err := os.Stat(f.Key()); err == nil {
				return nil
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name + " server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(f.Key(), key); err != nil {
		return err
	}
	return atomicfile.Write(f.Cert(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// authority reads the CA, or makes it (valid ten years).
func (f Files) authority(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if cb, err := os.ReadFile(f.CA()); err == nil {
		kb, err := os.ReadFile(f.caKey())
		if err != nil {
			return nil, nil, err
		}
		ca, key, err := parse(cb, kb)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (remove it and %s to make a new CA; clients must then be given the new %s)", f.CA(), err, f.caKey(), f.CA())
		}
		return ca, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(f.caKey(), key); err != nil {
		return nil, nil, err
	}
	if err := atomicfile.Write(f.CA(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func pemBytes(b []byte) []byte {
	if p, _ := pem.Decode(b); p != nil {
		return p.Bytes
	}
	return nil
}

func parse(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	c, err := x509.ParseCertificate(pemBytes(certPEM))
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParseECPrivateKey(pemBytes(keyPEM))
	return c, k, err
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}
