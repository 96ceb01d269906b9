package emulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzTokenRequest feeds the token endpoint arbitrary bodies, Authorization headers and content
// types: whatever a client sends, the answer is a 2xx or 4xx with a JSON body, never a 5xx or a
// panic.
func FuzzTokenRequest(f *testing.F) {
	fx := newFixture(f)
	code := mustCode(f, fx.Server, authorizeParams("mattermost", mmRedirect, "scope", "read_user"))
	form := "application/x-www-form-urlencoded"
	seeds := []struct{ body, auth, contentType string }{
		{"grant_type=authorization_code&code=" + code + "&redirect_uri=" + mmRedirect + "&client_id=mattermost&client_secret=" + mmSecret, "", form},
		{"grant_type=authorization_code&code=" + code + "&redirect_uri=" + mmRedirect, "Basic " + base64.StdEncoding.EncodeToString([]byte("mattermost:"+mmSecret)), form},
		{"grant_type=refresh_token&refresh_token=x&scope=a%09b", "Basic " + base64.StdEncoding.EncodeToString([]byte("%zz:%")), form},
		{"grant_type=refresh_token&refresh_token=x", "Basic " + base64.StdEncoding.EncodeToString([]byte(":")), form},
		{"grant_type=authorization_code&code_verifier=&code=&redirect_uri=%00", "Basic", form},
		{"grant_type=password&username=a&password=b", "Bearer x", form},
		{"%zz=%", "basic =", form},
		{`{"grant_type":"authorization_code"}`, "", "application/json"},
		{"--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nrefresh_token\r\n--x--", "", "multipart/form-data; boundary=x"},
		{strings.Repeat("a=b&", 20000), "", form},
		{"", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.body, s.auth, s.contentType)
	}
	f.Fuzz(func(t *testing.T, body, auth, contentType string) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		fx.Handler().ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("status %d for body %q, Authorization %q, Content-Type %q", w.Code, body, auth, contentType)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("status %d with a body that is not JSON: %q", w.Code, w.Body)
		}
	})
}
