package oauth_test

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssobridge/ssobridge/oauth"
	"github.com/ssobridge/ssobridge/oauth/store"
	"github.com/ssobridge/ssobridge/oauth/store/memstore"
	"github.com/ssobridge/ssobridge/oauth/store/redisstore"
	"github.com/ssobridge/ssobridge/oauth/store/storetest"
)

func sealerOf(t *testing.T, keys ...byte) *oauth.Sealer {
	t.Helper()
	var raw [][]byte
	for _, k := range keys {
		raw = append(raw, bytes.Repeat([]byte{k}, 32))
	}
	s, err := oauth.NewSealer(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// While keys change, the new key in SSOBRIDGE_ENCRYPTION_KEY and the old one in
// SSOBRIDGE_ENCRYPTION_KEYS_PREVIOUS, the old key opens the key check, which is then sealed with
// the new one: from then on the new key alone opens it, and the old one alone no longer does.
func TestAPreviousKeyOpensTheKeyCheckAndItIsResealed(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	old, next := sealerOf(t, 1), sealerOf(t, 2)
	found, err := oauth.CheckStore(t.Context(), st, old)
	if err != nil || !found.Marked || found.HadApps {
		t.Fatalf("first start: %+v, %v; want the store marked, without applications", found, err)
	}
	found, err = oauth.CheckStore(t.Context(), st, sealerOf(t, 2, 1))
	if err != nil || found.Resealed != old.Fingerprints()[0] || found.Fingerprint != next.Fingerprints()[0] || found.Marked {
		t.Fatalf("start with the new key and the old one as previous: %+v, %v; want the key check resealed from %s", found, err, old.Fingerprints()[0])
	}
	if found, err := oauth.CheckStore(t.Context(), st, next); err != nil || found.Resealed != "" {
		t.Fatalf("start with the new key alone: %+v, %v; want it to open the key check", found, err)
	}
	_, err = oauth.CheckStore(t.Context(), st, old)
	km, ok := errors.AsType[*oauth.KeyMismatchError](err)
	if !ok || km.Sealed != next.Fingerprints()[0] || km.Given[0] != old.Fingerprints()[0] {
		t.Fatalf("start with the old key alone: %v; want a key mismatch naming %s and %s", err, next.Fingerprints()[0], old.Fingerprints()[0])
	}
}

// A store an earlier version wrote has signing keys and no marker: a key that cannot open them
// is refused the same way, rather than marking the store with it.
func TestCheckStoreRefusesAKeyThatCannotOpenTheSigningKeysOfAnUnmarkedStore(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	if _, err := oauth.RotateKeys(t.Context(), st, sealerOf(t, 1), time.Now(), oauth.KeyRotation{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	_, err := oauth.CheckStore(t.Context(), st, sealerOf(t, 2))
	km, ok := errors.AsType[*oauth.KeyMismatchError](err)
	if !ok || km.Sealed != sealerOf(t, 1).Fingerprints()[0] || !strings.Contains(err.Error(), "signing keys") {
		t.Fatalf("CheckStore = %v; want a key mismatch over the signing keys, sealed with %s", err, sealerOf(t, 1).Fingerprints()[0])
	}
	if _, err := st.GetMarker(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the store was marked with a key that cannot open its data: %v", err)
	}
	if found, err := oauth.CheckStore(t.Context(), st, sealerOf(t, 1)); err != nil || !found.Marked {
		t.Errorf("CheckStore with the right key = %+v, %v; want the store marked", found, err)
	}
}

// After a key change the key check is sealed again at once, but the signing keys stay sealed
// with the old key until `keys rotate`: a bridge then given the new key alone is stopped at
// start, naming the signing keys and the old key, rather than answer the JWKS with a 500.
func TestCheckStoreRefusesANewKeyAloneWhileTheSigningKeysAreSealedWithTheOld(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	old := sealerOf(t, 1)
	if _, err := oauth.CheckStore(t.Context(), st, old); err != nil {
		t.Fatal(err)
	}
	if _, err := oauth.RotateKeys(t.Context(), st, old, time.Now(), oauth.KeyRotation{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if found, err := oauth.CheckStore(t.Context(), st, sealerOf(t, 2, 1)); err != nil || found.Resealed == "" {
		t.Fatalf("start with the new key and the old one as previous: %+v, %v; want the key check resealed", found, err)
	}
	_, err := oauth.CheckStore(t.Context(), st, sealerOf(t, 2))
	km, ok := errors.AsType[*oauth.KeyMismatchError](err)
	if !ok || km.Sealed != old.Fingerprints()[0] || !strings.Contains(err.Error(), "signing keys") || !strings.Contains(err.Error(), "keys rotate") {
		t.Fatalf("start with the new key alone, the signing keys sealed with the old: %v; want a key mismatch over the signing keys naming %s and keys rotate", err, old.Fingerprints()[0])
	}
	if _, err := oauth.RotateKeys(t.Context(), st, sealerOf(t, 2, 1), time.Now(), oauth.KeyRotation{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := oauth.CheckStore(t.Context(), st, sealerOf(t, 2)); err != nil {
		t.Errorf("start with the new key alone once keys rotate sealed the signing keys with it: %v", err)
	}
}

// storeLostFixture is a bridge on a real Redis, started (its store checked and marked) as serve
// starts it, with its operators' listener.
func storeLostFixture(t *testing.T, r *storetest.Redis) (*fixture, *httptest.Server) {
	t.Helper()
	opts, err := redisstore.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureOn(t, redisstore.New(redis.NewUniversalClient(opts), "").CacheApps(0), []string{"read_user"})
	if _, err := f.srv.CheckStore(t.Context()); err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(f.srv.AdminHandler(""))
	t.Cleanup(admin.Close)
	if resp := f.get(admin.URL + "/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz before the loss: %d %s", resp.StatusCode, readBody(t, resp))
	}
	return f, admin
}

// wantStoreLost checks every sign of a store that lost its data: the unknown-application page
// says so, readiness fails saying so, the metric is 1, and an ERROR is logged.
func wantStoreLost(t *testing.T, f *fixture, admin *httptest.Server) {
	t.Helper()
	resp := f.authorize(f.authorizeQuery("s"))
	if body := readBody(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "the store lost its data: restore with <code>ssobridge import</code>") && !strings.Contains(body, "the store lost its data: restore with `ssobridge import`") {
		t.Errorf("unknown application after the loss: %d %s; want the page to say the store lost its data", resp.StatusCode, body)
	}
	resp = f.get(admin.URL + "/readyz")
	if body := readBody(t, resp); resp.StatusCode != 503 || !strings.Contains(body, "the store lost its data: restore with `ssobridge import`") {
		t.Errorf("operators' readyz after the loss: %d %s; want 503 saying the store lost its data", resp.StatusCode, body)
	}
	resp = f.get(f.bridge.URL + "/readyz")
	if body := readBody(t, resp); resp.StatusCode != 503 || !strings.Contains(body, `"store":"failing"`) {
		t.Errorf("public readyz after the loss: %d %s; want 503, the store failing", resp.StatusCode, body)
	}
	resp = f.get(admin.URL + "/metrics")
	if body := readBody(t, resp); !strings.Contains(body, "\nssobridge_store_data_lost 1\n") {
		t.Errorf("metrics lack ssobridge_store_data_lost 1")
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"level":"ERROR","msg":"the store lost its data`) {
		t.Errorf("no ERROR logged of the loss:\n%s", logs)
	}
}

// Redis flushed while the bridge runs: every application is gone, and the bridge says why
// instead of calling Mattermost's Application ID wrong. An import (which writes a marker) makes
// it ready again; the bridge itself never writes the marker back while it runs.
func TestReadinessFailsWhenTheStoreLostItsData(t *testing.T) {
	r := storetest.StartRedis(t)
	f, admin := storeLostFixture(t, r)
	if _, err := r.Command("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	wantStoreLost(t, f, admin)
	if _, err := f.store.GetMarker(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the running bridge wrote a marker back (%v): the alarm would clear with nobody acting", err)
	}
	if marked, err := oauth.MarkImported(t.Context(), f.store); err != nil || !marked {
		t.Fatalf("MarkImported = %v, %v", marked, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := f.get(admin.URL + "/readyz")
		body := readBody(t, resp)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after the import: %d %s; want ready", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if body := readBody(t, f.get(admin.URL+"/metrics")); !strings.Contains(body, "\nssobridge_store_data_lost 0\n") {
		t.Errorf("metrics lack ssobridge_store_data_lost 0 after the import")
	}
}

// Redis replaced by an empty one (here: killed and started again without persistence) is noticed
// the same way.
func TestReadinessFailsWhenTheStoreIsReplacedByAnEmptyOne(t *testing.T) {
	r := storetest.StartRedis(t)
	f, admin := storeLostFixture(t, r)
	r.Kill()
	r.Restart()
	wantStoreLost(t, f, admin)
}
