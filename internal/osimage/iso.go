package osimage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// ISONeeds is the command that reads installer ISOs, and its Debian package.
var ISONeeds = map[string]string{"xorriso": "xorriso", "cp": "coreutils"}

// Install methods: how a node is installed from an osimage.
const (
	// MethodImage: booted's installer writes a disk image (the Debian image
	// booted builds).
	MethodImage = "image"
	// MethodKickstart, MethodPreseed and MethodAutoinstall: the
	// distribution's own installer, with a file booted renders per node.
	MethodKickstart   = "kickstart"
	MethodPreseed     = "preseed"
	MethodAutoinstall = "autoinstall"
)

// Info describes an osimage (inventory/ENV/osimages/NAME/osimage.json).
type Info struct {
	Name string `json:"name"`
	// Distro is rhel (RHEL, CentOS, Rocky, Alma), debian or ubuntu; Product
	// is what the ISO calls itself ("Rocky Linux").
	Distro  string `json:"distro"`
	Product string `json:"product"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Method  string `json:"method"`
	// Kernel and Initrd are the installer's, relative to the osimage's
	// directory (tree/ holds the ISO's files).
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	// ISO is the file it was imported from; Bytes its size on disk here.
	ISO      string    `json:"iso"`
	Bytes    int64     `json:"bytes"`
	Imported time.Time `json:"imported"`
}

// nameRE is what an osimage may be called (it is a URL path element).
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckName refuses a name an osimage cannot have.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("osimage name %q: use lower-case letters, digits, '.', '_' and '-' (at most 63, starting with a letter or digit)", name)
	}
	return nil
}

// layout is what Inspect looks for, in order.
const lookedFor = ".treeinfo or images/pxeboot/vmlinuz with initrd.img (RHEL, CentOS, Rocky, Alma), " +
	"casper/vmlinuz with casper/initrd (Ubuntu), .disk/info with install.amd/vmlinuz and initrd.gz (Debian)"

// Inspect reads an installer ISO and says what it is, without copying it.
func Inspect(ctx context.Context, iso string) (Info, error) {
	files, err := isoFiles(ctx, iso)
	if err != nil {
		return Info{}, err
	}
	has := func(p string) bool { return files[p] }
	read := func(p string) (string, error) { return isoRead(ctx, iso, p) }
	in := Info{ISO: filepath.Base(iso)}
	switch {
	case has(".treeinfo") || (has("images/pxeboot/vmlinuz") && has("images/pxeboot/initrd.img")):
		in.Distro, in.Method = "rhel", MethodKickstart
		in.Kernel, in.Initrd = "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"
		if has(".treeinfo") {
			s, err := read(".treeinfo")
			if err != nil {
				return in, err
			}
			ti := parseINI(s)
			in.Product = first(ti["release.name"], ti["general.family"], ti["product.name"])
			in.Version = first(ti["release.version"], ti["general.version"], ti["product.version"])
			in.Arch = first(ti["tree.arch"], ti["general.arch"])
			if k := ti["images-"+in.Arch+".kernel"]; k != "" {
				in.Kernel = k
			}
			if k := ti["images-"+in.Arch+".initrd"]; k != "" {
				in.Initrd = k
			}
		}
		if !has(in.Kernel) || !has(in.Initrd) {
			return in, fmt.Errorf("ISO %s: a RHEL-family tree whose installer is missing: looked for %s and %s (named by its .treeinfo)", iso, in.Kernel, in.Initrd)
		}
		if in.Version == "" || in.Product == "" { // no .treeinfo: the volume ID says ("AlmaLinux-9.4-x86_64-dvd")
			vol := volumeID(ctx, iso)
			if in.Version == "" {
				in.Version = versionIn(vol)
			}
			if f := strings.FieldsFunc(vol, func(r rune) bool { return r == '-' || r == ' ' || r == '_' }); in.Product == "" && len(f) > 0 {
				in.Product = f[0]
			}
		}
	case has("casper/vmlinuz") && has("casper/initrd"):
		in.Distro, in.Method, in.Product = "ubuntu", MethodAutoinstall, "Ubuntu"
		in.Kernel, in.Initrd = "casper/vmlinuz", "casper/initrd"
		if has(".disk/info") {
			s, err := read(".disk/info")
			if err != nil {
				return in, err
			}
			in.Version, in.Arch = versionIn(s), archIn(s)
		}
	case has(".disk/info") && has("install.amd/vmlinuz") && has("install.amd/initrd.gz"):
		s, err := read(".disk/info")
		if err != nil {
			return in, err
		}
		if !strings.HasPrefix(s, "Debian") {
			return in, fmt.Errorf("ISO %s: .disk/info says %q, not Debian: looked for %s", iso, firstLine(s), lookedFor)
		}
		in.Distro, in.Method, in.Product = "debian", MethodPreseed, "Debian GNU/Linux"
		in.Kernel, in.Initrd = "install.amd/vmlinuz", "install.amd/initrd.gz"
		in.Version, in.Arch = versionIn(s), archIn(s)
	default:
		var top []string
		for f := range files {
			if t := strings.SplitN(f, "/", 2)[0]; !slices.Contains(top, t) {
				top = append(top, t)
			}
		}
		sort.Strings(top)
		if len(top) > 12 {
			top = append(top[:12], "…")
		}
		return in, fmt.Errorf("ISO %s: not an installer booted knows: looked for %s; its top level has: %s",
			iso, lookedFor, strings.Join(top, ", "))
	}
	if in.Arch == "" {
		in.Arch = "x86_64"
	}
	if in.Version == "" {
		return in, fmt.Errorf("ISO %s: a %s installer whose version it does not say (in .treeinfo, .disk/info or its volume ID)", iso, in.Distro)
	}
	return in, nil
}

// DefaultName is the name an import gives an osimage: distro-version-arch.
func (in Info) DefaultName() string {
	d := in.Distro
	if in.Distro == "rhel" {
		switch p := strings.ToLower(in.Product); {
		case strings.HasPrefix(p, "rocky"):
			d = "rocky"
		case strings.HasPrefix(p, "alma"):
			d = "alma"
		case strings.HasPrefix(p, "centos"):
			d = "centos"
		}
	}
	return strings.ToLower(d + "-" + in.Version + "-" + in.Arch)
}

// Import copies the ISO's installer and tree into dir/NAME (name "": its
// DefaultName) and records what it is. An osimage of that name already
// there is refused; nothing is left of a failed import.
func Import(ctx context.Context, iso, dir, name string) (Info, error) {
	in, err := Inspect(ctx, iso)
	if err != nil {
		return in, err
	}
	if name == "" {
		name = in.DefaultName()
	}
	if err := CheckName(name); err != nil {
		return in, err
	}
	in.Name = name
	dst := filepath.Join(dir, name)
	if _, err := os.Stat(dst); err == nil {
		return in, fmt.Errorf("osimage %s is already imported (osimage:del it first, or give another NAME)", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return in, err
	}
	tmp, err := os.MkdirTemp(dir, "."+name+".import-")
	if err != nil {
		return in, err
	}
	defer removeTree(tmp)
	cmd := exec.CommandContext(ctx, "xorriso", "-osirrox", "on:auto_chmod_on", "-indev", iso, "-extract", "/", filepath.Join(tmp, "tree"))
	if b, err := cmd.CombinedOutput(); err != nil {
		return in, fmt.Errorf("ISO %s: copying its tree: %v: %s", iso, err, tailLines(string(b), 3))
	}
	if in.Method == MethodAutoinstall { // Ubuntu's installer fetches the whole ISO (url=)
		if err := copyFile(ctx, iso, filepath.Join(tmp, "install.iso")); err != nil {
			return in, fmt.Errorf("ISO %s: %w", iso, err)
		}
	}
	// Served to nodes by nginx (as root): the tree need not be world-readable.
	// A link is kept only when it stays in the tree (a distribution's
	// dists/stable -> bookworm); one that leaves it (to /etc/shadow, to
	// ../../inventory) goes, and nothing is changed through a link.
	tree := filepath.Join(tmp, "tree")
	filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink != 0 {
			if !linkInTree(tree, p) {
				os.Remove(p)
			}
			return nil
		}
		if err == nil {
			mode := os.FileMode(0o600)
			if d.IsDir() {
				mode = 0o700
			}
			os.Chmod(p, mode)
			if i, err := d.Info(); err == nil && !d.IsDir() {
				in.Bytes += i.Size()
			}
		}
		return nil
	})
	in.Kernel, in.Initrd = "tree/"+in.Kernel, "tree/"+in.Initrd
	in.Imported = time.Now().UTC().Truncate(time.Second)
	b, _ := json.MarshalIndent(in, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "osimage.json"), append(b, '\n'), 0o600); err != nil {
		return in, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return in, err
	}
	return in, nil
}

// Read returns the osimage dir/NAME.
func Read(dir, name string) (Info, error) {
	if err := CheckName(name); err != nil {
		return Info{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, name, "osimage.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("osimage %s: not imported: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return Info{}, err
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("%s: %w", filepath.Join(dir, name, "osimage.json"), err)
	}
	return in, nil
}

// List returns the osimages imported into dir, by name.
func List(dir string) ([]Info, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		in, err := Read(dir, e.Name())
		if err != nil {
			return out, err
		}
		out = append(out, in)
	}
	return out, nil
}

// Delete removes the osimage dir/NAME.
func Delete(dir, name string) error {
	if _, err := Read(dir, name); err != nil {
		return err
	}
	return removeTree(filepath.Join(dir, name))
}

// isoFiles lists the ISO's regular files (paths without the leading /).
func isoFiles(ctx context.Context, iso string) (map[string]bool, error) {
	if _, err := os.Stat(iso); err != nil {
		return nil, fmt.Errorf("ISO %s: %w", iso, err)
	}
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "xorriso", "-indev", iso, "-find", "/", "-type", "f")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// xorriso reads anything, making a blank image of what is not an ISO.
	if e := stderr.String(); err == nil && (strings.Contains(e, "No ISO 9660 image") || strings.Contains(e, "is blank")) {
		err = errors.New("no ISO 9660 volume in it")
	}
	if err != nil {
		return nil, fmt.Errorf("ISO %s: not a readable ISO 9660 image (xorriso: %v: %s)", iso, err, tailLines(stderr.String(), 2))
	}
	files := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		l = strings.TrimSuffix(strings.TrimPrefix(l, "'"), "'")
		if l = strings.TrimPrefix(l, "/"); l != "" {
			files[l] = true
		}
	}
	return files, nil
}

// isoRead returns a small file of the ISO.
func isoRead(ctx context.Context, iso, p string) (string, error) {
	tmp, err := os.MkdirTemp("", "booted-iso-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "f")
	if b, err := exec.CommandContext(ctx, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/"+p, out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ISO %s: reading %s: %v: %s", iso, p, err, tailLines(string(b), 2))
	}
	b, err := os.ReadFile(out)
	if len(b) > 64<<10 {
		b = b[:64<<10]
	}
	return string(b), err
}

// volumeID is the ISO's volume ID ("" if unread).
func volumeID(ctx context.Context, iso string) string {
	b, _ := exec.CommandContext(ctx, "xorriso", "-indev", iso, "-pvd_info").CombinedOutput()
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Volume Id    :"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseINI reads a .treeinfo: section.key → value.
func parseINI(s string) map[string]string {
	m := map[string]string{}
	sec := ""
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			sec = strings.TrimSpace(l[1 : len(l)-1])
		default:
			if k, v, ok := strings.Cut(l, "="); ok {
				m[sec+"."+strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return m
}

var versionRE = regexp.MustCompile(`\d+(\.\d+)*`)

func versionIn(s string) string { return versionRE.FindString(s) }

func archIn(s string) string {
	for _, a := range []string{"amd64", "arm64", "x86_64", "aarch64", "i386"} {
		if strings.Contains(s, " "+a) {
			return a
		}
	}
	return ""
}

func first(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstLine(s string) string { return strings.SplitN(strings.TrimSpace(s), "\n", 2)[0] }

func copyFile(ctx context.Context, src, dst string) error {
	cmd := exec.CommandContext(ctx, "cp", "--sparse=always", src, dst)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s: %v: %s", src, err, b)
	}
	return nil
}

// removeTree removes a directory an import wrote (ISO trees may be read-only).
func removeTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// linkInTree reports whether the link at p points inside tree: relative,
// and resolved (lexically, and through the links on the way) not out of it.
func linkInTree(tree, p string) bool {
	target, err := os.Readlink(p)
	if err != nil || filepath.IsAbs(target) {
		return false
	}
	rel, err := filepath.Rel(tree, filepath.Join(filepath.Dir(p), target))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return false
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return true // dangling, inside: harmless
	}
	rt, err := filepath.EvalSymlinks(tree)
	if err != nil {
		return false
	}
	rel, err = filepath.Rel(rt, real)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
