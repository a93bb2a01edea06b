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

	// Bare metal (RenderMetal): InstalledURL is where the installer reports
	// the disk written (/booted/installed); the installed system phones
	// home at its first boot instead of from the installer.
	InstalledURL string
	// TreeURL is the imported ISO's tree (the installer's repository),
	// MirrorHost and MirrorDir the same split as Debian's installer wants
	// it; PostURL is where post.sh is served to this node; MAC is its NIC's.
	TreeURL, MirrorHost, MirrorDir, PostURL, MAC string
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// MetalFiles are the files a bare-metal node's installer is given, per
// install method (osimage.Method*), rendered from dir/metal-*.tmpl: the
// kickstart (RHEL family), preseed (Debian) or autoinstall user-data and
// meta-data (Ubuntu), and post.sh, the step every method runs at the end
// (the phone-home script, the token, the "installed" report).
var MetalFiles = map[string][]string{
	"kickstart":   {"ks.cfg", "post.sh"},
	"preseed":     {"preseed.cfg", "post.sh"},
	"autoinstall": {"user-data", "meta-data", "post.sh"},
}

var metalTemplates = map[string]string{
	"ks.cfg": "metal-rhel.ks.tmpl", "preseed.cfg": "metal-debian.preseed.tmpl",
	"user-data": "metal-ubuntu.user-data.tmpl", "meta-data": "metal-ubuntu.meta-data.tmpl", "post.sh": "metal-post.sh.tmpl",
}

// RenderMetal renders the files of install method for a node.
func RenderMetal(dir, method string, d Data) (map[string][]byte, error) {
	names, ok := MetalFiles[method]
	if !ok {
		return nil, fmt.Errorf("install method %q: booted renders kickstart, preseed or autoinstall files", method)
	}
	out := map[string][]byte{}
	for _, n := range names {
		main := filepath.Join(dir, metalTemplates[n])
		t, err := template.New(filepath.Base(main)).Option("missingkey=error").ParseFiles(main, filepath.Join(dir, "post.ks.tmpl"))
		if err != nil {
			return nil, fmt.Errorf("%s template: %w", method, err)
		}
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, filepath.Base(main), d); err != nil {
			return nil, fmt.Errorf("%s template %s: %w", method, main, err)
		}
		out[n] = b.Bytes()
	}
	return out, nil
}

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
