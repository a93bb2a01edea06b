package conductor

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FilesBucket is the object store a site's conductors put the files they
// bring back from its hosts in (hosts:get, files too large for a result):
// one per site, which only that site's conductors may write.
func FilesBucket(env, site string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
				return r
			}
			return '_'
		}, s)
	}
	return "BOOTED_FILES_" + clean(env) + "_" + clean(site)
}

// SetupSite makes site's files bucket (replicated replicas times; an
// object lives an hour: the controller deletes it once it has it).
func SetupSite(ctx context.Context, js jetstream.JetStream, env, site string, replicas int) error {
	return retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: FilesBucket(env, site), Replicas: replicas, TTL: time.Hour})
		return err
	})
}

// PutFile puts the file at path in site's files bucket as name.
func PutFile(ctx context.Context, js jetstream.JetStream, env, site, name, path, sha256hex string) error {
	return putObject(ctx, js, FilesBucket(env, site), name, path, sha256hex)
}

// GetFile writes the object name of site's files bucket to path (with
// mode), checking its SHA-256, then deletes the object.
func GetFile(ctx context.Context, js jetstream.JetStream, env, site, name, path, sha256hex string, mode os.FileMode) error {
	if err := getObject(ctx, js, FilesBucket(env, site), name, path, sha256hex, mode); err != nil {
		return err
	}
	if obs, err := js.ObjectStore(ctx, FilesBucket(env, site)); err == nil {
		obs.Delete(ctx, name)
	}
	return nil
}

// filesPermissions are what site's conductors may do with its files
// bucket: put objects (chunks, then the metadata, replacing an object of
// that name), read its metadata, and nothing of another site's.
func filesPermissions(env, site string) []string {
	b := FilesBucket(env, site)
	obj := "OBJ_" + b
	return []string{
		"$JS.API.STREAM.INFO." + obj,
		"$O." + b + ".C.>",
		"$O." + b + ".M.>",
		"$JS.API.DIRECT.GET." + obj + ".>",
		"$JS.API.STREAM.MSG.GET." + obj,
		"$JS.API.STREAM.PURGE." + obj,
	}
}
