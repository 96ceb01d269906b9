package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestHealthcheckExitsZeroOnlyOn200(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "unready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	tests := []struct {
		name, url string
		code      int
		says      string
	}{
		{"a 200 is healthy", srv.URL + "/healthz", 0, "healthy"},
		{"a 503 is unhealthy", srv.URL + "/readyz", 1, "503"},
		{"nobody listening is unhealthy", "http://127.0.0.1:1/healthz", 1, "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			code, stdout, stderr := runCmd(t, "healthcheck", "--url", tt.url)
			if code != tt.code || !strings.Contains(stdout+stderr, tt.says) {
				t.Errorf("exit %d, output %q; want exit %d and %q", code, stdout+stderr, tt.code, tt.says)
			}
		})
	}
}

// In a container the check has the bridge's own environment: it must find the bridge from it.
func TestHealthcheckFindsTheBridgeFromItsListenSettings(t *testing.T) {
	var (
		mu    sync.Mutex
		asked []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, r.URL.Path)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	tests := []struct {
		name        string
		env         map[string]string
		args        []string
		wantPath    string
		wantAddress string
	}{
		{"the operators' listener on all interfaces is asked on loopback", map[string]string{"SSOBRIDGE_ADMIN_LISTEN": "0.0.0.0:" + port, "SSOBRIDGE_LISTEN": ":1"}, nil, "/healthz", "127.0.0.1:" + port},
		{"an operators' listener without host is asked on loopback", map[string]string{"SSOBRIDGE_ADMIN_LISTEN": ":" + port}, nil, "/healthz", "127.0.0.1:" + port},
		{"--ready asks /readyz", map[string]string{"SSOBRIDGE_ADMIN_LISTEN": "127.0.0.1:" + port}, []string{"--ready"}, "/readyz", "127.0.0.1:" + port},
		{"without an operators' listener the bridge's own is asked", map[string]string{"SSOBRIDGE_ADMIN_LISTEN": "", "SSOBRIDGE_LISTEN": ":" + port}, nil, "/healthz", "127.0.0.1:" + port},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			mu.Lock()
			asked = nil
			mu.Unlock()
			code, stdout, stderr := runCmd(t, append([]string{"healthcheck"}, tt.args...)...)
			mu.Lock()
			defer mu.Unlock()
			if code != 0 || len(asked) != 1 || asked[0] != tt.wantPath || !strings.Contains(stdout, "http://"+tt.wantAddress+tt.wantPath) {
				t.Errorf("exit %d, asked %v, output %q; want exit 0 and one request to %s%s", code, asked, stdout+stderr, tt.wantAddress, tt.wantPath)
			}
		})
	}
}

// A bridge that serves TLS itself, with the operators' listener off, answers its own listener
// only over https: the check must ask it so, or the image's health check fails forever.
func TestHealthcheckAsksHTTPSWhenTheBridgeServesTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	clearEnv(t)
	t.Setenv("SSOBRIDGE_ADMIN_LISTEN", "")
	t.Setenv("SSOBRIDGE_LISTEN", ":"+port)
	t.Setenv("SSOBRIDGE_TLS_CERT", "/etc/ssobridge/tls.crt")
	code, stdout, stderr := runCmd(t, "healthcheck")
	if want := "https://127.0.0.1:" + port + "/healthz"; code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("exit %d, output %q; want exit 0 after asking %s", code, stdout+stderr, want)
	}
}
