// Package settings holds every BOOTED_* variable: each a documented
// constant, all read (and checked) in one function, FromEnviron. A value a
// variable does not accept is refused with the values it does accept,
// before any target acts.
package settings

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"booted/internal/rollout"
)

// The variables. Each target's doc comment names the ones it reads.
const (
	// Output set to "json" makes listings, recaps and per-host results
	// print JSON; "text" (the default) prints tables.
	Output = "BOOTED_OUTPUT"
	// Inventory is the runtime state directory; default ROOT/inventory.
	Inventory = "BOOTED_INVENTORY"
	// Database is where the inventory's database is: a postgres:// URL
	// (PostgreSQL, which several controllers can share; no password in
	// it: a passfile or a client certificate) or a SQLite file's path;
	// default the file INVENTORY/booted.db. Keys, tokens and logs stay
	// in the inventory directory either way.
	Database = "BOOTED_DATABASE"
	// Root is the project directory holding envs/, kickstart/, nginx/ and
	// services/; default the current directory.
	Root = "BOOTED_ROOT"
	// Parallel bounds how many hosts a multi-host target works on at
	// once; default 64.
	Parallel = "BOOTED_PARALLEL"
	// Retry set to "failed" runs a multi-host target only on the hosts it
	// failed on last time.
	Retry = "BOOTED_RETRY"
	// JUnit is a file service:test writes JUnit XML to.
	JUnit = "BOOTED_JUNIT"
	// Batch is the size of a rolling deploy's batches: a count, a
	// percentage ("25%") or "all"; default 1.
	Batch = "BOOTED_BATCH"
	// AcceptNew set to 1 pins the key of a static host the known_hosts
	// file does not have (trust on first use) instead of refusing it.
	AcceptNew = "BOOTED_ACCEPT_NEW"
	// Force set to 1 lets image:del power a running VM off first.
	Force = "BOOTED_FORCE"
	// Verify set to 1 makes hosts:put read each host's file (sha256sum)
	// even where one stat says it is what booted put there.
	Verify = "BOOTED_VERIFY"
	// DryRun set to 1 makes monitor:run log (and record) what it would do,
	// and do nothing.
	DryRun = "BOOTED_DRY_RUN"
	// Follow set to 1 makes service:logs follow the logs until Ctrl-C.
	Follow = "BOOTED_FOLLOW"
	// VBoxManage is another VBoxManage command (the vbox provider).
	VBoxManage = "BOOTED_VBOXMANAGE"
	// VBoxTFTP is another TFTP directory for VirtualBox's NAT (default
	// ~/.config/VirtualBox/TFTP).
	VBoxTFTP = "BOOTED_VBOX_TFTP"
	// QemuAppend is added to qemu VMs' kernel command line.
	QemuAppend = "BOOTED_QEMU_APPEND"
	// LoadPath is the path bench:load requests; default /.
	LoadPath = "BOOTED_LOAD_PATH"
	// BenchRuns is the number of runs per figure of bench:fanout; default 5.
	BenchRuns = "BOOTED_BENCH_RUNS"
	// TestArgs are the arguments of go test in the test target, instead
	// of the default (every test, the long bare-metal one beside the
	// others, then the race pass).
	TestArgs = "BOOTED_TEST_ARGS"
	// LockWait is how long a target that changes an environment waits for
	// another one holding it (a Go duration); default 10m.
	LockWait = "BOOTED_LOCK_WAIT"
	// APIListen is where api:serve listens (host:port); default
	// 127.0.0.1:8773 (Eucalyptus' port).
	APIListen = "BOOTED_API_LISTEN"
	// Limit restricts the multi-host targets to the hosts it names: a
	// comma list of host names or role names, globs allowed (Ansible's
	// --limit).
	Limit = "BOOTED_LIMIT"
	// BinDir is where the install target puts the booted command; default
	// /usr/local/bin as root, else ~/.local/bin.
	BinDir = "BOOTED_BIN_DIR"
	// User is who the instances:* and keypair:* targets act for (the
	// owner of the instances and key pairs); default the login name.
	User = "BOOTED_USER"
	// InstanceType, KeyName, UserData (a file) and Tags (KEY=VALUE,…) are
	// instances:run's size, key pair, user data and tags.
	InstanceType = "BOOTED_INSTANCE_TYPE"
	KeyName      = "BOOTED_KEY_NAME"
	UserData     = "BOOTED_USER_DATA"
	Tags         = "BOOTED_TAGS"
	// NATSCredentials is the credentials file (an nkey seed or a .creds)
	// a conductor or controller uses instead of the env file's (a
	// conductor's machine keeps its own).
	NATSCredentials = "BOOTED_NATS_CREDENTIALS"
)

// Settings are the values of the variables.
type Settings struct {
	Root      string
	Inventory string
	// Database is the inventory's database: a URL or a file ("": the
	// file booted.db in Inventory).
	Database string
	JSON     bool
	// Parallel bounds concurrent hosts; zero means 64.
	Parallel    int
	RetryFailed bool
	JUnit       string
	Batch       string
	AcceptNew   bool
	Force       bool
	Verify      bool
	Follow      bool
	DryRun      bool
	VBoxManage  string
	VBoxTFTP    string
	QemuAppend  string
	LoadPath    string
	BenchRuns   int
	TestArgs    []string
	LockWait    time.Duration
	APIListen   string
	BinDir      string
	Limit       []string
	User        string
	// InstanceType, KeyName, UserData (a file) and Tags are instances:run's.
	InstanceType string
	KeyName      string
	UserData     string
	Tags         map[string]string
	// NATSCredentials replaces the env file's NATS credentials.
	NATSCredentials string
}

// FromEnviron reads every BOOTED_* variable, refusing a value a variable
// does not accept (all such values at once), and applies the defaults.
func FromEnviron() (Settings, error) { return From(os.Getenv) }

// From is FromEnviron reading through getenv.
func From(getenv func(string) string) (Settings, error) {
	var errs []error
	bad := func(name, value, accepted string) {
		errs = append(errs, fmt.Errorf("%s=%s: %s", name, value, accepted))
	}
	flag := func(name string) bool {
		switch v := getenv(name); v {
		case "", "0":
			return false
		case "1":
			return true
		default:
			bad(name, v, "use 1 (on) or 0 (off)")
			return false
		}
	}
	num := func(name string, def, lo, hi int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad(name, v, fmt.Sprintf("use a whole number from %d to %d", lo, hi))
			return def
		}
		return n
	}
	s := Settings{
		Root: getenv(Root), Inventory: getenv(Inventory), Database: getenv(Database), JUnit: getenv(JUnit), Batch: getenv(Batch),
		VBoxManage: getenv(VBoxManage), VBoxTFTP: getenv(VBoxTFTP), QemuAppend: getenv(QemuAppend), LoadPath: getenv(LoadPath),
		NATSCredentials: getenv(NATSCredentials),
	}
	if s.Root == "" {
		s.Root = "."
	}
	if s.Inventory == "" {
		s.Inventory = filepath.Join(s.Root, "inventory")
	}

	switch v := getenv(Output); strings.ToLower(v) {
	case "", "text":
	case "json":
		s.JSON = true
	default:
		bad(Output, v, "use json or text")
	}
	s.Parallel = num(Parallel, 0, 1, 10000)
	if v := getenv(Limit); v != "" {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if _, err := path.Match(p, ""); err != nil || p == "" {
				bad(Limit, v, fmt.Sprintf("%q is not a host, role or glob; use names such as w1,lb* or workers", p))
				continue
			}
			s.Limit = append(s.Limit, p)
		}
	}
	switch v := getenv(Retry); v {
	case "":
	case "failed":
		s.RetryFailed = true
	default:
		bad(Retry, v, "use failed (run only on the hosts that failed last time), or leave it unset")
	}
	if s.Batch != "" {
		if _, err := rollout.ParseBatch(s.Batch); err != nil {
			errs = append(errs, err)
		}
	}
	s.AcceptNew, s.Force, s.DryRun, s.Follow, s.Verify = flag(AcceptNew), flag(Force), flag(DryRun), flag(Follow), flag(Verify)
	if s.LoadPath == "" {
		s.LoadPath = "/"
	} else if !strings.HasPrefix(s.LoadPath, "/") {
		bad(LoadPath, s.LoadPath, "use a path starting with /")
	}
	s.BenchRuns = num(BenchRuns, 5, 1, 100)
	s.LockWait = 10 * time.Minute
	if v := getenv(LockWait); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad(LockWait, v, "use a duration such as 30s or 10m")
		} else {
			s.LockWait = d
		}
	}
	s.BinDir = getenv(BinDir)
	if s.BinDir == "" {
		s.BinDir = "/usr/local/bin"
		if os.Geteuid() != 0 {
			home, _ := os.UserHomeDir()
			s.BinDir = filepath.Join(home, ".local", "bin")
		}
	}
	s.APIListen = getenv(APIListen)
	if s.APIListen == "" {
		s.APIListen = "127.0.0.1:8773"
	} else if h, p, err := net.SplitHostPort(s.APIListen); err != nil || p == "" || (h != "" && net.ParseIP(h) == nil) {
		bad(APIListen, s.APIListen, "use ADDRESS:PORT, such as 127.0.0.1:8773")
	}
	s.User = getenv(User)
	if s.User == "" {
		s.User = "root"
		if u, err := user.Current(); err == nil {
			s.User = u.Username
		}
	}
	s.InstanceType, s.KeyName, s.UserData = getenv(InstanceType), getenv(KeyName), getenv(UserData)
	if v := getenv(Tags); v != "" {
		s.Tags = map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				bad(Tags, v, "use KEY=VALUE pairs separated by commas, such as team=blue,env=ci")
				break
			}
			s.Tags[strings.TrimSpace(k)] = val
		}
	}
	s.TestArgs = strings.Fields(getenv(TestArgs))
	if len(s.TestArgs) == 0 {
		s.TestArgs = []string{"-count=1", "-timeout", "30m", "./..."}
	}
	return s, errors.Join(errs...)
}
