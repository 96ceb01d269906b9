package store_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// records are one of each kind a backend stores, as encoding/json writes them.
func records(t testing.TB) [][]byte {
	values := recordValues()
	out := make([][]byte, len(values))
	for i, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// recordValues are one record of each kind a backend stores.
func recordValues() []any {
	now := time.Now()
	return []any{
		store.Code{Version: store.FormatVersion, ClientID: store.NewClientID(), SessionID: store.NewID(16), Scope: "read_user openid",
			RedirectURI: "https://mm.example.com/signup/gitlab/complete", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
			CodeChallengeMethod: "S256", IssuedAt: now, ExpiresAt: now.Add(time.Minute)},
		store.TokenPair{Version: store.FormatVersion, ClientID: "c", SessionID: store.NewID(16), Scope: "read_user",
			AccessKey: store.TokenKey("a"), RefreshKey: store.TokenKey("r"), IssuedAt: now, AccessExpiresAt: now.Add(time.Hour)},
		store.Session{ID: store.NewID(16), GitLabUserID: 1 << 40, Username: "jdoe", ClientID: "c", SealedToken: []byte{0, 1, 2, 0xff},
			Scope: "read_user", Nonce: "é\u2028<>&", AuthTime: time.Now(), Groups: []string{"a", "a/b"}, TraceID: "t",
			User: json.RawMessage(`{"id":1,"name":"J\u00e9 \"D\"","identities":[],"x":null}`), UserFetchedAt: time.Now(), CreatedAt: time.Now()},
		store.Application{ID: "id", Name: "Mattermost <chat>", RedirectURIs: []string{"https://a/b?c=d&e"}, Scopes: []string{"read_user"},
			Trusted: true, Confidential: true, AllowedGroups: []string{"g"}, SecretHash: store.HashSecret("s"), CreatedAt: time.Now()},
		store.Authorization{ClientID: "c", RedirectURI: "https://a/b", State: "\x00\"\\state", Scope: "read_user", UpstreamVerifier: "v", CreatedAt: time.Now(),
			Prompt: "login consent", MaxAge: new(int64(0))},
		store.TraceStep{Step: "token", From: "A", To: "B", Label: "POST", At: time.Now(), Duration: 1.25, OK: true, Status: 200, Detail: map[string]string{"k": "v"}},
	}
}

// decodeBoth decodes b into every record type with encoding/json and with Decode, and reports
// whether they disagree: on whether b is valid, or on the value (compared as re-encoded).
func decodeBoth(t *testing.T, b []byte) {
	for _, newValue := range []func() any{
		func() any { return new(store.Code) }, func() any { return new(store.TokenPair) }, func() any { return new(store.Session) },
		func() any { return new(store.Application) }, func() any { return new(store.Authorization) },
		func() any { return new(store.TraceStep) },
	} {
		std, fast := newValue(), newValue()
		stdErr, fastErr := json.Unmarshal(b, std), store.Decode(b, fast)
		if stdErr != nil || fastErr != nil {
			continue // a record that is not valid JSON is an error either way; Decode must just not panic
		}
		want, _ := json.Marshal(std)
		got, _ := json.Marshal(fast)
		if !bytes.Equal(want, got) {
			t.Fatalf("%T decoded from %q:\n encoding/json %s\n Decode        %s", std, b, want, got)
		}
	}
}

func TestDecodeReadsEveryRecordAsEncodingJSON(t *testing.T) {
	for _, b := range records(t) {
		decodeBoth(t, b)
	}
}

func TestDecodeKeepsNoMemoryOfItsInput(t *testing.T) {
	b := records(t)[2]
	var s store.Session
	if err := store.Decode(b, &s); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(s)
	for i := range b {
		b[i] = ' '
	}
	if got, _ := json.Marshal(s); !bytes.Equal(got, want) {
		t.Errorf("overwriting the input changed the decoded session:\n%s\n%s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range records(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"user":{"a":[1,2,{"b":"\ud800"}]},"sealed_token":"!!"}`))
	f.Fuzz(decodeBoth)
}

// encodeBoth encodes v with encoding/json and with Encode, and fails if the bytes differ: the
// backends keep and compare what encoding/json writes.
func encodeBoth(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, err := store.Encode(v)
	if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) {
		t.Fatalf("%T:\n encoding/json %s (%v)\n Encode        %s (%v)", v, want, wantErr, got, err)
	}
}

func TestEncodeWritesWhatEncodingJSONWrites(t *testing.T) {
	for _, v := range recordValues() {
		encodeBoth(t, v)
		encodeBoth(t, &v)
	}
	// What encoding/json changes as it writes: invalid UTF-8 (replaced), HTML characters and
	// U+2028 (escaped), raw JSON with spaces (compacted), floats past 1e21 (exponent), an
	// offset time, a map's keys (sorted).
	encodeBoth(t, &store.Session{ID: "bad\xff\xfeutf<b>&", Username: "jos\u00e9\u2028", User: json.RawMessage("{ \"a\" : 1,\n \"b\": [1, 2] }")})
	encodeBoth(t, &store.Authorization{State: "st\xffate<>&\u2029\x00", RedirectURI: "https://a/b?c=d&e=<f>"})
	encodeBoth(t, &store.TraceStep{Label: "a\x00b\x1f", At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)), Duration: 1.0 / 3,
		Detail: map[string]string{"z": "1", "a": "2", "\xff": "3"}})
	encodeBoth(t, &store.TraceStep{Duration: 1e21})
	encodeBoth(t, &store.UpstreamToken{AccessToken: "a", RefreshToken: "r", TokenType: "Bearer", Expiry: time.Now()})
	encodeBoth(t, [2]string{"verifier", "\u00e9"})
	// A user body that is not JSON is refused by both: it is never stored.
	for _, raw := range []string{`{"a":`, "nope", "", `{"a":1} x`} {
		encodeBoth(t, &store.Session{User: json.RawMessage(raw)})
	}
}

// FuzzEncode holds Encode to encoding/json's bytes for whatever the client, the provider or the
// person may put in a record: a state, a redirect URI, a username, a user's JSON.
func FuzzEncode(f *testing.F) {
	f.Add("state", "https://a/b?c", "jdoe", `{"id":1,"name":"J"}`, 1.25)
	f.Add("\xff<&>\u2028", "", "é", "{ \"a\" : [ 1 , 2 ] }", 1e21)
	f.Fuzz(func(t *testing.T, state, uri, name, user string, d float64) {
		sess := &store.Session{ID: state, Username: name, Scope: uri, SealedToken: []byte(user)}
		if json.Valid([]byte(user)) {
			sess.User = json.RawMessage(user)
		}
		encodeBoth(t, sess)
		encodeBoth(t, &store.Authorization{State: state, RedirectURI: uri, Nonce: name})
		encodeBoth(t, &store.TraceStep{Label: state, Reason: name, Duration: d, Detail: map[string]string{uri: user}})
		encodeBoth(t, [2]string{state, name})
	})
}
