package gitlabapi_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ssobridge/ssobridge/gitlabapi"
	"github.com/ssobridge/ssobridge/gitlabapi/gitlabtest"
	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// A GitLab URL that is not GitLab's is told apart from GitLab, and each mistake is named with what
// answered and what to change: a port where nothing listens, a server that is not GitLab (a web
// server's page, another provider's discovery), a wrong path prefix.
func TestProbeBaseURLSaysWhatAnsweredWhereGitLabShouldBe(t *testing.T) {
	gl := gitlabtest.NewTestServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	nginx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "nginx/1.24.0")
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><head><title>Welcome to nginx!</title></head><body>...</body></html>"))
	}))
	defer nginx.Close()
	keycloak := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"issuer":"http://kc/realms/x","authorization_endpoint":"http://kc/realms/x/protocol/openid-connect/auth","token_endpoint":"http://kc/realms/x/protocol/openid-connect/token"}`))
	}))
	defer keycloak.Close()

	if err := gitlabapi.ProbeBaseURL(t.Context(), upstream.NewHTTPClient(), gl.URL(), ""); err != nil {
		t.Fatalf("the GitLab emulator: %v", err)
	}
	tests := []struct {
		name, base string
		kind       upstream.Kind
		says       []string
	}{
		{"a port where nothing listens", refused, upstream.KindUnreachable, []string{"Nothing listens at " + strings.TrimPrefix(refused, "http://"), "SSOBRIDGE_GITLAB_URL (" + refused + ")"}},
		{"a web server that is not GitLab", nginx.URL, upstream.KindBadResponse, []string{"is not GitLab", `a page titled "Welcome to nginx!"`, "Server: nginx/1.24.0", "Set SSOBRIDGE_GITLAB_URL (" + nginx.URL + ")"}},
		{"another provider's discovery", keycloak.URL, upstream.KindBadResponse, []string{"is not GitLab", "/oauth/authorize and /oauth/token"}},
		{"a wrong path prefix", gl.URL() + "/gitlab", upstream.KindRejected, []string{"answers 404 at " + gl.URL() + "/gitlab/.well-known/openid-configuration", "wrong path prefix", "SSOBRIDGE_GITLAB_URL (" + gl.URL() + "/gitlab)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := gitlabapi.ProbeBaseURL(t.Context(), upstream.NewHTTPClient(), tt.base, "")
			ue, ok := errors.AsType[*upstream.Error](err)
			if !ok || ue.Kind != tt.kind {
				t.Fatalf("ProbeBaseURL(%s) = %v; want a %s upstream error", tt.base, err, tt.kind)
			}
			said := ue.Error() + " " + ue.Fix()
			for _, want := range tt.says {
				if !strings.Contains(said, want) {
					t.Errorf("error and fix lack %q: %s", want, said)
				}
			}
		})
	}
}
