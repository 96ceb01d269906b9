package emulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStartListensAndCloseStops(t *testing.T) {
	s := New()
	if s.URL() != "" {
		t.Fatalf("URL before Start = %q", s.URL())
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("a second Start succeeded")
	}
	resp, err := http.Get(s.URL() + "/.well-known/openid-configuration")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := http.Get(s.URL() + "/"); err == nil {
		t.Error("still answering after Close")
	}
}

func TestStartOnAllInterfacesGivesALoopbackURL(t *testing.T) {
	s := New()
	if err := s.Start(":0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	resp, err := http.Get(s.URL() + "/oauth/discovery/keys")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestHandlerAloneBuildsLinksFromTheHost(t *testing.T) {
	s := New()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc["issuer"] != srv.URL {
		t.Fatalf("issuer %v, want %s (%v)", doc["issuer"], srv.URL, err)
	}
}

func TestIssuerOverridesTheListeningAddress(t *testing.T) {
	s := newTestServer(t, WithIssuer("https://gitlab.example.com/"))
	if s.URL() != "https://gitlab.example.com" {
		t.Fatalf("URL = %q", s.URL())
	}
}

func TestClientErrorsNeverBecomeServerErrors(t *testing.T) {
	f := newFixture(t)
	big := strings.Repeat("a", maxBodyBytes+1)
	tests := []struct {
		name, method, target, body string
		status                     int
	}{
		{"an oversized token request is 413", "POST", "/oauth/token", "grant_type=" + big, 413},
		{"a malformed token body is 400", "POST", "/oauth/token", "grant_type=%zz", 400},
		{"a malformed authorize query is 400", "GET", "/oauth/authorize?client_id=%zz", "", 400},
		{"a malformed API query is 400", "GET", "/api/v4/user?access_token=%zz", "", 400},
		{"an unknown API route is 404", "GET", "/api/v4/projects", "", 404},
		{"GET on the token endpoint is 404, as Rails routes it", "GET", "/oauth/token", "", 404},
		{"an unknown page is 404", "GET", "/nowhere", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			f.Handler().ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %.200s", w.Code, tt.status, w.Body)
			}
		})
	}
}

func TestRequestsAreRecordedWithSecretsRedacted(t *testing.T) {
	f := newFixture(t)
	serve(f.Server, http.MethodPost, "/oauth/token?client_secret=in-the-url",
		tokenForm("grant_type", "authorization_code", "code", "c0de", "client_id", "mattermost",
			"client_secret", "s3cret", "code_verifier", "v", "redirect_uri", mmRedirect),
		http.Header{"Authorization": {"Basic bWF0dGVybW9zdDpzM2NyZXQ="}, "Accept": {"application/json"}})
	serve(f.Server, http.MethodGet, "/api/v4/user?access_token=t0ken", nil, http.Header{"Authorization": {"garbage"}})

	reqs := f.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests recorded", len(reqs))
	}
	tokenReq, userReq := reqs[0], reqs[1]
	if tokenReq.Method != "POST" || tokenReq.Path != "/oauth/token" || !tokenReq.Time.Equal(f.clock.Now()) {
		t.Errorf("token request %+v", tokenReq)
	}
	for _, k := range []string{"code", "client_secret", "code_verifier"} {
		if tokenReq.Form.Get(k) != redacted {
			t.Errorf("form %s = %q", k, tokenReq.Form.Get(k))
		}
	}
	if tokenReq.Query.Get("client_secret") != redacted {
		t.Errorf("query client_secret = %q", tokenReq.Query.Get("client_secret"))
	}
	if tokenReq.Form.Get("client_id") != "mattermost" || tokenReq.Form.Get("redirect_uri") != mmRedirect {
		t.Errorf("ordinary parameters lost: %v", tokenReq.Form)
	}
	if tokenReq.Header.Get("Authorization") != "Basic [REDACTED]" || tokenReq.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", tokenReq.Header)
	}
	if userReq.Query.Get("access_token") != redacted || userReq.Header.Get("Authorization") != redacted {
		t.Errorf("user request %+v", userReq)
	}

	// Requests returns copies.
	reqs[0].Form.Set("client_id", "changed")
	if f.Requests()[0].Form.Get("client_id") != "mattermost" {
		t.Error("Requests shares its maps")
	}
	f.ClearRequests()
	if len(f.Requests()) != 0 {
		t.Error("ClearRequests left requests")
	}
}

func TestRequestsKeepTheLastThousand(t *testing.T) {
	s := New()
	for i := range maxRecorded + 5 {
		serve(s, http.MethodGet, "/nowhere?i="+itoa(int64(i)), nil, nil)
	}
	reqs := s.Requests()
	if len(reqs) != maxRecorded || reqs[0].Query.Get("i") != "5" || reqs[maxRecorded-1].Query.Get("i") != itoa(maxRecorded+4) {
		t.Fatalf("%d requests, first i=%s, last i=%s", len(reqs), reqs[0].Query.Get("i"), reqs[len(reqs)-1].Query.Get("i"))
	}
	serve(s, http.MethodGet, "/nowhere?long="+strings.Repeat("x", maxRecordedValue+1), nil, nil)
	reqs = s.Requests()
	if got := reqs[len(reqs)-1].Query.Get("long"); got != strings.Repeat("x", maxRecordedValue)+truncated {
		t.Fatalf("a long value was recorded with %d bytes", len(got))
	}
}
