package conductor

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FilesBucket is the object store of the files between the controller and
// a site's hosts: those its conductors bring back (hosts:get, files too
// large for a result) and those the controller sends them (hosts:put):
// one per site, which only that site's conductors (and the controller) may
// read and write.
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

// PutFile puts the file at path in site's files bucket as name, unless an
// object of that name with that SHA-256 is there.
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

// ReadFile writes the object name of site's files bucket to path (with
// mode), checking its SHA-256, and leaves it there for the site's other
// conductors: what the controller put for the site's hosts (hosts:put).
func ReadFile(ctx context.Context, js jetstream.JetStream, env, site, name, path, sha256hex string, mode os.FileMode) error {
	return getObject(ctx, js, FilesBucket(env, site), name, path, sha256hex, mode)
}

// filesPermissions are what site's conductors may do with its files
// bucket: put objects (chunks, then the metadata, replacing an object of
// that name), read its metadata and its objects (an ordered consumer of an
// object's chunks, its flow control), and nothing of another site's.
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
		"$JS.API.CONSUMER.CREATE." + obj,
		"$JS.API.CONSUMER.CREATE." + obj + ".>",
		"$JS.API.CONSUMER.DELETE." + obj + ".>",
		"$JS.FC." + obj + ".>",
	}
}
