package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"booted/internal/files"
	"booted/internal/pkgs"
)

// Needs are what building a version runs on the controller (git archive,
// tar, the build command under sh), with their Debian packages; Go itself
// is what the README's commands run with.
var Needs = pkgs.Need{"git": "git", "tar": "tar", "sh": "dash"}

// Artifact is one built version.
type Artifact struct {
	Service string
	Version string
	Commit  string
	// Path of the binary on the controller.
	Path   string
	SHA256 string
}

// ErrUnknownVersion is returned for a version that is not a tag or commit.
var ErrUnknownVersion = errors.New("unknown version")

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$`)

// repo returns the local repository holding the source: the project's own,
// a local directory named by repo:, or a mirror of repo: (a URL) kept
// under cacheDir/repos and fetched when a version is not in it yet.
func (d *Def) repo(ctx context.Context, root, cacheDir string, fetch bool) (string, error) {
	if d.Repo == "" {
		return root, nil
	}
	if st, err := os.Stat(d.Repo); err == nil && st.IsDir() {
		return d.Repo, nil
	}
	mirror := filepath.Join(cacheDir, "repos", d.Name+".git")
	var cmd *exec.Cmd
	if _, err := os.Stat(mirror); err != nil {
		if err := os.MkdirAll(filepath.Dir(mirror), 0o755); err != nil {
			return "", err
		}
		cmd = exec.CommandContext(ctx, "git", "clone", "--quiet", "--mirror", "--", d.Repo, mirror)
	} else if fetch {
		cmd = exec.CommandContext(ctx, "git", "-C", mirror, "fetch", "--quiet", "--prune", "--tags", "origin")
	} else {
		return mirror, nil
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: repo %s: %v: %s", d.Name, d.Repo, err, bytes.TrimSpace(out))
	}
	return mirror, nil
}

// Resolve returns the commit VERSION names, failing with ErrUnknownVersion
// before anything is built or touched.
func (d *Def) Resolve(ctx context.Context, root, cacheDir, version string) (string, error) {
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("%w %q of %s: a version is a git tag or commit", ErrUnknownVersion, version, d.Name)
	}
	for _, fetch := range []bool{false, true} {
		repo, err := d.repo(ctx, root, cacheDir, fetch)
		if err != nil {
			return "", err
		}
		out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", "--quiet", version+"^{commit}").Output()
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
		if repo == root || repo == d.Repo {
			break // a local repository: nothing to fetch
		}
	}
	where := d.Repo
	if where == "" {
		where = root
	}
	return "", fmt.Errorf("%w %q of %s: not a tag or commit of %s (git tag -l lists the tags)", ErrUnknownVersion, version, d.Name, where)
}

// Build builds version once into cacheDir/NAME/VERSION-COMMIT/ and returns
// the artifact; a version already built is taken from the cache.
func (d *Def) Build(ctx context.Context, root, cacheDir, version string, log io.Writer) (*Artifact, error) {
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, err
	}
	commit, err := d.Resolve(ctx, root, cacheDir, version)
	if err != nil {
		return nil, err
	}
	return d.BuildCommit(ctx, root, cacheDir, version, commit, log)
}

// BuildCommit is Build of a version already resolved to commit (by Resolve).
func (d *Def) BuildCommit(ctx context.Context, root, cacheDir, version, commit string, log io.Writer) (*Artifact, error) {
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, err
	}
	repo, err := d.repo(ctx, root, cacheDir, false)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, d.Name, version+"-"+commit[:12])
	a := &Artifact{Service: d.Name, Version: version, Commit: commit, Path: filepath.Join(dir, d.Name)}
	if sum, err := os.ReadFile(a.Path + ".sha256"); err == nil {
		if got, err := files.Sum(a.Path); err == nil && got == strings.TrimSpace(string(sum)) {
			a.SHA256 = got
			return a, nil
		}
	}
	src, err := os.MkdirTemp("", "booted-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	// The source of exactly that commit: git archive of the service's path.
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", commit, d.Path)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return nil, err
	}
	untar.Stdin = pipe
	var aerr, terr bytes.Buffer
	archive.Stderr, untar.Stderr = &aerr, &terr
	if err := untar.Start(); err != nil {
		return nil, err
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return nil, fmt.Errorf("build %s %s: git archive %s: %v: %s", d.Name, version, d.Path, err, bytes.TrimSpace(aerr.Bytes()))
	}
	if err := untar.Wait(); err != nil {
		return nil, fmt.Errorf("build %s %s: untar: %v: %s", d.Name, version, err, bytes.TrimSpace(terr.Bytes()))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmdline, err := render(d.BuildCmd, map[string]any{"Version": version, "Commit": commit, "Output": a.Path + ".tmp"})
	if err != nil {
		return nil, fmt.Errorf("%s/service.yaml: build: %w", d.Dir, err)
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Dir = filepath.Join(src, d.Path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, log), io.MultiWriter(&out, log)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s %s (%s): %v\n%s", d.Name, version, commit[:12], err, tail(out.String(), 20))
	}
	sum, err := files.Sum(a.Path + ".tmp")
	if err != nil {
		return nil, fmt.Errorf("build %s %s: the build command wrote no %s: %w", d.Name, version, a.Path, err)
	}
	if err := os.Rename(a.Path+".tmp", a.Path); err != nil {
		return nil, err
	}
	if err := os.WriteFile(a.Path+".sha256", []byte(sum+"\n"), 0o644); err != nil {
		return nil, err
	}
	a.SHA256 = sum
	return a, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
