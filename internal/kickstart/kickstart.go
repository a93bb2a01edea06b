// Package kickstart renders a host's kickstart file from the templates in
// kickstart/ (NAME.ks.tmpl plus post.ks.tmpl, which holds the %post that
// installs booted's phone-home script byte for byte as local hosts run it).
package kickstart

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"text/template"
)

// Data is what a kickstart is rendered with.
type Data struct {
	Name, Env string
	// AuthorizedKey is the deploy key (one authorized_keys line).
	AuthorizedKey string
	// PhoneHome is the host's rendered phone-home script.
	PhoneHome string
	// Token is this provisioning's enrollment token ("": none yet; the
	// kickstart is rendered again, with one, when the host starts).
	Token string
	// IdentityURL is where a clone asks for its name, followed by its MAC.
	IdentityURL string
	// FailedURL is where a failed install reports (/booted/failed).
	FailedURL   string
	ServicePort int
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Render renders dir/NAME.ks.tmpl (NAME is e.g. rhel9 or centos7).
func Render(dir, name string, d Data) ([]byte, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("kickstart template %q: use the name of a file kickstart/NAME.ks.tmpl", name)
	}
	main := filepath.Join(dir, name+".ks.tmpl")
	if _, err := os.Stat(main); err != nil {
		return nil, fmt.Errorf("kickstart template %s: %w (provider.vbox.kickstart names a file of %s)", main, err, dir)
	}
	t, err := template.New(filepath.Base(main)).Option("missingkey=error").ParseFiles(main, filepath.Join(dir, "post.ks.tmpl"))
	if err != nil {
		return nil, fmt.Errorf("kickstart template: %w", err)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, filepath.Base(main), d); err != nil {
		return nil, fmt.Errorf("kickstart template %s: %w", main, err)
	}
	return b.Bytes(), nil
}
