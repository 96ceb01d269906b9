package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
)

// An apps file gives a bridge without Redis its applications, as Dex's static clients do for its
// in-memory storage: `ssobridge apps ... --apps-file F` keeps them in F (the format of `ssobridge
// export`, client secrets as hashes only), and `ssobridge serve` with SSOBRIDGE_APPS_FILE and no
// Redis reads it at start.

const appsFileHelp = "a file of applications (the format of `ssobridge export`) for a bridge without Redis: the apps commands keep them there, and serve reads it at start; empty: applications live in Redis"

func addAppsFileSetting(st *settings) *setting {
	return st.add("apps-file", "", appsFileHelp)
}

// checkStoreChoice refuses an apps file beside a Redis URL: the two would hold two different
// lists of applications.
func checkStoreChoice(redisURL, appsFile *setting) error {
	if redisURL.value != "" && appsFile.value != "" {
		return appsFile.errorf("goes with the in-memory store only, and %s is set too: with Redis, applications live in Redis (to move a file's there: ssobridge import --file %s)", redisURL.env(), appsFile.value)
	}
	return nil
}

// loadAppsFile returns an in-memory store holding the applications and consents of the apps
// file; a file that does not exist yet is an empty store, so that the first `apps create` makes it.
func loadAppsFile(ctx context.Context, path *setting) (store.Store, int, error) {
	s := memstore.New()
	f, err := os.Open(path.value)
	if errors.Is(err, fs.ErrNotExist) {
		return s, 0, nil
	}
	if err != nil {
		return nil, 0, path.errorf("%v", err)
	}
	defer f.Close()
	doc, _, err := readExport(f)
	if err != nil {
		return nil, 0, path.errorf("%s: %v", path.value, err)
	}
	// The file's signing keys, if it has any, are left out: a bridge in memory makes its own.
	if _, err := importStore(ctx, s, doc, nil, false); err != nil {
		return nil, 0, path.errorf("%s: %v", path.value, err)
	}
	return s, len(doc.Applications), nil
}

// saveAppsFile writes the store's applications and consents to the apps file, in place of what
// it held, through a rename so that a running bridge never reads half a file.
func saveAppsFile(ctx context.Context, s store.Store, path *setting) error {
	doc, err := exportStore(ctx, s, time.Now().UTC())
	if err != nil {
		return err
	}
	doc.OIDCKeySetSealed = ""
	b, err := marshalExport(doc)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path.value, b); err != nil {
		return path.errorf("%v", err)
	}
	return nil
}

// appsFileNote is what the apps commands add after changing an apps file.
func appsFileNote(path string) string {
	return fmt.Sprintf("Saved to %s; a running `ssobridge serve` with SSOBRIDGE_APPS_FILE=%s takes the change when restarted.", path, path)
}
