package kickstart

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"booted/internal/bootlog"
	"booted/internal/testutil"
)

const (
	metalToken = "cd0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	metalKey   = "ssh-ed25519 AAAAmetalkey booted@metal"
)

func renderMetal(t *testing.T, method string) (map[string][]byte, []byte) {
	t.Helper()
	repo := testutil.RepoRoot(t)
	ph, err := bootlog.PhoneHome{URL: "http://10.82.0.1:8078/booted/", Env: "metal", Name: "mn1", Retry: time.Minute}.
		Render(filepath.Join(repo, "kickstart", "phone-home.sh.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := RenderMetal(filepath.Join(repo, "kickstart"), method, Data{Name: "mn1", Env: "metal", AuthorizedKey: metalKey,
		PhoneHome: string(ph), Token: metalToken, FailedURL: "http://10.82.0.1:8078/booted/failed", ServicePort: 9000,
		InstalledURL: "http://10.82.0.1:8078/booted/installed", TreeURL: "http://10.82.0.1:8078/metal/images/rocky-9.3-x86_64/tree",
		MirrorHost: "10.82.0.1:8078", MirrorDir: "/metal/images/debian-12.5.0-amd64/tree",
		PostURL: "http://10.82.0.1:8078/metal/ks/mn1/post.sh", MAC: "52:54:00:82:00:11"})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(MetalFiles[method]) {
		t.Fatalf("%s: rendered %d files, want %v", method, len(files), MetalFiles[method])
	}
	return files, ph
}

// post.sh, the last step of every bare-metal install: valid sh, the
// phone-home byte for byte, root's key, the token in its file and in the
// "installed" report alone, and no phone-home run from the installer (the
// installed system phones home at its first boot).
func checkMetalPost(t *testing.T, post, ph []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "post.sh")
	os.WriteFile(f, post, 0o600)
	if b, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
		t.Errorf("post.sh is not valid sh: %v: %s", err, b)
	}
	checkPhoneHome(t, post, ph)
	for _, want := range []string{
		"printf '%s\\n' '" + metalKey + "' > /root/.ssh/authorized_keys",
		"(umask 077; printf '%s' " + metalToken + " > /etc/booted/enroll-token)",
		`url = "http://10.82.0.1:8078/booted/installed"`,
		`data-urlencode = "token=` + metalToken + `"`,
		"systemctl enable booted-phone-home.service",
	} {
		if !bytes.Contains(post, []byte(want)) {
			t.Errorf("post.sh lacks %q", want)
		}
	}
	if n := bytes.Count(post, []byte(metalToken)); n != 2 {
		t.Errorf("the token is in post.sh %d times, want 2 (its file, the report's curl config)", n)
	}
	if bytes.Contains(post, []byte("\n/etc/booted/phone-home.sh\n")) {
		t.Error("post.sh runs the phone-home from the installer; the installed system must (first boot)")
	}
}

// The RHEL family's kickstart: pykickstart's RHEL 9 commands and options,
// the network install from the imported tree, the same post step.
func TestMetal_Kickstart(t *testing.T) {
	files, ph := renderMetal(t, "kickstart")
	cmds := common(map[string]map[string]bool{"url": {"--url": true}})
	delete(cmds, "cdrom")
	ks := files["ks.cfg"]
	checkSyntax(t, ks, "metal-rhel", cmds)
	checkPhoneHome(t, ks, ph)
	for _, want := range []string{"url --url=http://10.82.0.1:8078/metal/images/rocky-9.3-x86_64/tree\n",
		"network --bootproto=dhcp --device=52:54:00:82:00:11 --activate --hostname=mn1\n", `sshkey --username=root "` + metalKey + `"`,
		"--port=80:tcp,9000:tcp"} {
		if !bytes.Contains(ks, []byte(want)) {
			t.Errorf("ks.cfg lacks %q", want)
		}
	}
	checkMetalPost(t, files["post.sh"], ph)
}

// Debian's preseed: every line is one debconf-set-selections accepts
// (checked by it), the mirror is the imported tree, the late command runs
// post.sh in the installed system.
func TestMetal_Preseed(t *testing.T) {
	testutil.RequireCommands(t, "debconf-set-selections")
	files, ph := renderMetal(t, "preseed")
	p := files["preseed.cfg"]
	f := filepath.Join(t.TempDir(), "preseed.cfg")
	os.WriteFile(f, p, 0o600)
	if b, err := exec.Command("debconf-set-selections", "--checkonly", f).CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("debconf-set-selections --checkonly: %v: %s", err, b)
	}
	for _, want := range []string{"d-i mirror/http/hostname string 10.82.0.1:8078\n", "d-i mirror/http/directory string /metal/images/debian-12.5.0-amd64/tree\n",
		"d-i netcfg/get_hostname string mn1\n", "curl -fsS -m 60 -o /root/booted-post.sh http://10.82.0.1:8078/metal/ks/mn1/post.sh"} {
		if !bytes.Contains(p, []byte(want)) {
			t.Errorf("preseed.cfg lacks %q", want)
		}
	}
	if bytes.Contains(p, []byte(metalToken)) || bytes.Contains(p, []byte("password ")) && !bytes.Contains(p, []byte("root-login boolean false")) {
		t.Error("the preseed carries the token or a password")
	}
	checkMetalPost(t, files["post.sh"], ph)
}

// Ubuntu's autoinstall: cloud-config YAML whose autoinstall section is
// version 1 with only keys subiquity's schema has, an identity or
// user-data section (one is required), the late command running post.sh.
func TestMetal_Autoinstall(t *testing.T) {
	files, ph := renderMetal(t, "autoinstall")
	ud := files["user-data"]
	if !bytes.HasPrefix(ud, []byte("#cloud-config\n")) {
		t.Error("user-data does not start with #cloud-config")
	}
	var doc struct {
		Autoinstall map[string]any `yaml:"autoinstall"`
	}
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatalf("user-data: %v", err)
	}
	// The top-level keys of subiquity's autoinstall schema (Ubuntu Server
	// 22.04 and later).
	known := strings.Fields("version interactive-sections early-commands locale refresh-installer keyboard source network proxy apt storage identity active-directory ubuntu-pro ubuntu-advantage ssh codecs drivers oem snaps debconf-selections packages kernel kernel-crash-dumps timezone updates shutdown late-commands error-commands reporting user-data")
	for k := range doc.Autoinstall {
		if !slices.Contains(known, k) {
			t.Errorf("autoinstall key %q is not in subiquity's schema", k)
		}
	}
	if doc.Autoinstall["version"] != 1 {
		t.Errorf("autoinstall version %v, want 1", doc.Autoinstall["version"])
	}
	if doc.Autoinstall["identity"] == nil && doc.Autoinstall["user-data"] == nil {
		t.Error("autoinstall needs identity or user-data")
	}
	late, _ := doc.Autoinstall["late-commands"].([]any)
	if len(late) != 1 || !strings.Contains(late[0].(string), "http://10.82.0.1:8078/metal/ks/mn1/post.sh") {
		t.Errorf("late-commands %v", late)
	}
	if bytes.Contains(ud, []byte(metalToken)) {
		t.Error("user-data carries the token")
	}
	var md map[string]string
	if err := yaml.Unmarshal(files["meta-data"], &md); err != nil || md["instance-id"] == "" || md["local-hostname"] != "mn1" {
		t.Errorf("meta-data %v: %v", md, err)
	}
	checkMetalPost(t, files["post.sh"], ph)
}

func TestMetal_UnknownMethod(t *testing.T) {
	if _, err := RenderMetal(filepath.Join(testutil.RepoRoot(t), "kickstart"), "kiwi", Data{}); err == nil || !strings.Contains(err.Error(), `"kiwi"`) {
		t.Errorf("unknown method: %v", err)
	}
}
