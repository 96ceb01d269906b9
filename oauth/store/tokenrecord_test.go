package store

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/go-oauth2/oauth2/v4/models"
)

// Records written by an earlier bridge stay in Redis, so the stored JSON is pinned byte for byte.
func TestTokenRecordJSONIsPinned(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tok := &models.Token{
		ClientID: "client", UserID: "session", RedirectURI: "https://chat.example.com/cb", Scope: "read_user",
		Access: "access", AccessCreateAt: at, AccessExpiresIn: time.Hour,
		Refresh: "refresh", RefreshCreateAt: at,
		Extension: url.Values{"k": {"v"}},
	}
	rec, _, err := NewTokenRecord(tok, at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"token":{"ClientID":"client","UserID":"session","RedirectURI":"https://chat.example.com/cb","Scope":"read_user","Code":"","CodeChallenge":"","CodeChallengeMethod":"","CodeCreateAt":"0001-01-01T00:00:00Z","CodeExpiresIn":0,"Access":"","AccessCreateAt":"2025-01-02T03:04:05Z","AccessExpiresIn":3600000000000,"Refresh":"","RefreshCreateAt":"2025-01-02T03:04:05Z","RefreshExpiresIn":0,"Extension":{"k":["v"]}},` +
		`"access_key":"` + "a0561fd649cdb6baa784055f051bad796ea0afef17fca38219549deeba4e8c1a" + `","refresh_key":"` + "d6cc0a088c07683c65cd266860cab8d94b3a1937b17420d9da30ca299c09fb77" + `"}`
	if string(b) != want {
		t.Errorf("record JSON:\n got %s\nwant %s", b, want)
	}
}

func TestTokenTTLs(t *testing.T) {
	now := time.Now()
	code := func(createdAgo, expiresIn time.Duration) *models.Token {
		return &models.Token{Code: "c", CodeCreateAt: now.Add(-createdAgo), CodeExpiresIn: expiresIn}
	}
	pair := func(refresh string, refreshExpiresIn time.Duration) *models.Token {
		return &models.Token{
			Access: "a", AccessCreateAt: now.Add(-time.Hour), AccessExpiresIn: 90 * time.Minute,
			Refresh: refresh, RefreshCreateAt: now.Add(-time.Hour), RefreshExpiresIn: refreshExpiresIn,
		}
	}
	for name, tc := range map[string]struct {
		tok  *models.Token
		want TokenTTLs
	}{
		"live code":                       {code(time.Minute, 10*time.Minute), TokenTTLs{Code: 9 * time.Minute}},
		"code expiring now":               {code(time.Minute, time.Minute), TokenTTLs{}},
		"expired code":                    {code(time.Hour, time.Minute), TokenTTLs{Code: -59 * time.Minute}},
		"access without refresh":          {pair("", 0), TokenTTLs{Access: 30 * time.Minute}},
		"refresh without expiry":          {pair("r", 0), TokenTTLs{Access: 30 * time.Minute, Refresh: NoExpiry}},
		"refresh with expiry":             {pair("r", 2*time.Hour), TokenTTLs{Access: 30 * time.Minute, Refresh: time.Hour}},
		"refresh expired before its pair": {pair("r", time.Minute), TokenTTLs{Access: 30 * time.Minute, Refresh: -59 * time.Minute}},
	} {
		rec, got, err := NewTokenRecord(tc.tok, now)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: TTLs = %+v, want %+v", name, got, tc.want)
		}
		if rec.Token.Code != "" || rec.Token.Access != "" || rec.Token.Refresh != "" {
			t.Errorf("%s: record keeps a raw value: %+v", name, rec.Token)
		}
		if (tc.tok.Refresh != "") != (rec.RefreshKey != "") || (tc.tok.Access != "") != (rec.AccessKey != "") {
			t.Errorf("%s: keys %q, %q for access %q, refresh %q", name, rec.AccessKey, rec.RefreshKey, tc.tok.Access, tc.tok.Refresh)
		}
	}
	if _, _, err := NewTokenRecord(&models.Token{Refresh: "r"}, now); err == nil {
		t.Error("a token with neither code nor access token was accepted")
	}
}

func TestTokenRecordInfoPutsBackTheValueLookedUp(t *testing.T) {
	rec, _, err := NewTokenRecord(&models.Token{ClientID: "client", Access: "a", Refresh: "r"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := rec.Info("", "", "r")
	if got.ClientID != "client" || got.Code != "" || got.Access != "" || got.Refresh != "r" {
		t.Errorf("Info = %+v, want client's token with only its refresh value", got)
	}
}
