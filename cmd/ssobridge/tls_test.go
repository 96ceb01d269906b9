package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/upstream"
)

// writeCertPair writes a self-signed certificate for 127.0.0.1 with the given serial, and its
// key, to the two paths, and returns the certificate.
func writeCertPair(t *testing.T, certPath, keyPath string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "sso.example.com"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"sso.example.com"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != "" {
		writeFile(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	if keyPath != "" {
		writeFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial makes a new TLS connection to addr and returns the serial of the certificate it
// is served.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS connection to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// get fetches url with client and says whether the connection was one already open.
func get(t *testing.T, client *http.Client, url string) (resp *http.Response, reused bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, reused
}

func tlsSettings(dir string) (cert, key *setting) {
	return &setting{name: "tls-cert", value: filepath.Join(dir, "tls.crt")}, &setting{name: "tls-key", value: filepath.Join(dir, "tls.key")}
}

func TestHTTPSReloadKeepsOpenConnectionsAndServesNewOnesTheNewCertificate(t *testing.T) {
	cert, key := tlsSettings(t.TempDir())
	first := writeCertPair(t, cert.value, key.value, 1)
	r, err := newCertReloader(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- serveUntilDone(ctx, tls.NewListener(ln, r.tlsConfig()), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serveUntilDone: %v", err)
		}
	}()

	roots := x509.NewCertPool()
	roots.AddCert(first)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	resp, _ := get(t, client, "https://"+addr+"/")
	if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 1 {
		t.Fatalf("served serial %d, want 1", got)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("served over %s; HTTP/2 is offered to clients that ask", resp.Proto)
	}

	second := writeCertPair(t, cert.value, key.value, 2)
	roots.AddCert(second)
	if err := r.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	resp, reused := get(t, client, "https://"+addr+"/")
	if !reused {
		t.Error("the reload closed the keep-alive connection")
	}
	if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); resp.StatusCode != 200 || got != 1 {
		t.Errorf("the open connection answered %d with serial %d, want 200 with serial 1", resp.StatusCode, got)
	}
	if got := servedSerial(t, addr, roots); got != 2 {
		t.Errorf("a new connection is served serial %d, want 2", got)
	}

	t.Run("a key that is not the certificate's keeps the current pair", func(t *testing.T) {
		writeCertPair(t, cert.value, "", 3)
		err := r.reload()
		if err == nil || !strings.Contains(err.Error(), "SSOBRIDGE_TLS_KEY (--tls-key)") || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("reload: %v; want it to name SSOBRIDGE_TLS_KEY and say the key does not match", err)
		}
		if got := servedSerial(t, addr, roots); got != 2 {
			t.Errorf("serial %d served after a bad reload, want 2", got)
		}
	})
	t.Run("a certificate file that is not PEM keeps the current pair", func(t *testing.T) {
		writeFile(t, cert.value, []byte("not a certificate"))
		err := r.reload()
		if err == nil || !strings.Contains(err.Error(), "SSOBRIDGE_TLS_CERT (--tls-cert)") || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Errorf("reload: %v; want it to name SSOBRIDGE_TLS_CERT", err)
		}
		if got := servedSerial(t, addr, roots); got != 2 {
			t.Errorf("serial %d served after a bad reload, want 2", got)
		}
	})
	t.Run("a missing key file keeps the current pair", func(t *testing.T) {
		writeCertPair(t, cert.value, key.value, 4)
		os.Remove(key.value)
		if err := r.reload(); err == nil || !strings.Contains(err.Error(), "SSOBRIDGE_TLS_KEY (--tls-key): cannot read") {
			t.Errorf("reload: %v", err)
		}
		if got := servedSerial(t, addr, roots); got != 2 {
			t.Errorf("serial %d served after a bad reload, want 2", got)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			conn.Close()
			t.Error("a TLS 1.1 handshake succeeded")
		}
	})
}

func TestReloadOnSignalTakesUpTheNewPairAndLogsABadOne(t *testing.T) {
	cert, key := tlsSettings(t.TempDir())
	writeCertPair(t, cert.value, key.value, 1)
	r, err := newCertReloader(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	sigs := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.reloadOn(ctx, sigs, slog.New(slog.NewJSONHandler(logs, nil))); close(done) }()

	writeCertPair(t, cert.value, key.value, 2)
	sigs <- syscall.SIGHUP
	if l := waitForLogLine(t, logs, "TLS certificate reloaded"); l["serial"] != "02" {
		t.Errorf("reload log line %v", l)
	}
	writeCertPair(t, cert.value, "", 3) // the key is now the wrong one
	sigs <- syscall.SIGHUP
	refused := waitForLogLine(t, logs, "TLS certificate not reloaded; still serving the previous one")
	if refused["level"] != "ERROR" || !strings.Contains(refused["error"].(string), "SSOBRIDGE_TLS_KEY") || refused["serial"] != "02" {
		t.Errorf("refusal log line %v", refused)
	}
	cancel()
	<-done
	if got := r.leaf().SerialNumber.Int64(); got != 2 {
		t.Errorf("serving serial %d, want 2: the good pair taken up, the bad one refused", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a server.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLine returns the last JSON log line with msg, or nil.
func logLine(t *testing.T, logs *syncBuffer, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		if line["msg"] == msg {
			found = line
		}
	}
	return found
}

// waitForLogLine waits for a JSON log line with msg.
func waitForLogLine(t *testing.T, logs *syncBuffer, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l := logLine(t, logs, msg); l != nil {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q log line in:\n%s", msg, logs.String())
	return nil
}

// setServeEnv gives the serve settings a working configuration plus more.
func setServeEnv(t *testing.T, more map[string]string) {
	t.Helper()
	clearEnv(t)
	env := map[string]string{
		"SSOBRIDGE_PUBLIC_URL":           "https://sso.example.com",
		"SSOBRIDGE_GITLAB_URL":           "https://gitlab.example.com",
		"SSOBRIDGE_GITLAB_CLIENT_ID":     "id",
		"SSOBRIDGE_GITLAB_CLIENT_SECRET": "secret",
		"SSOBRIDGE_LISTEN":               "127.0.0.1:0",
		"SSOBRIDGE_ADMIN_LISTEN":         "",
	}
	for k, v := range more {
		env[k] = v
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func loadServeConfig(t *testing.T) (*serveConfig, error) {
	t.Helper()
	st, load := serveSettings(io.Discard)
	if err := st.parse(nil); err != nil {
		t.Fatal(err)
	}
	return load()
}

// startServeBridge runs serveBridge until the test ends, and returns its log and its address.
func startServeBridge(t *testing.T, cfg *serveConfig) (*syncBuffer, string) {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveBridge(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serveBridge: %v", err)
		}
	})
	return logs, waitForLogLine(t, logs, "bridge listening")["addr"].(string)
}

func TestServeOverHTTPSReloadsOnSIGHUPRedirectsPlainHTTPAndTrustsOnlyItsProxies(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCertPair(t, certPath, keyPath, 1)
	setServeEnv(t, map[string]string{
		"SSOBRIDGE_PUBLIC_URL":           "https://sso.example.com:8443",
		"SSOBRIDGE_TLS_CERT":             certPath,
		"SSOBRIDGE_TLS_KEY":              keyPath,
		"SSOBRIDGE_HTTP_REDIRECT_LISTEN": "127.0.0.1:0",
		"SSOBRIDGE_TRUSTED_PROXIES":      "127.0.0.1",
	})
	cfg, err := loadServeConfig(t)
	if err != nil {
		t.Fatal(err)
	}
	logs, addr := startServeBridge(t, cfg)
	redirectAddr := waitForLogLine(t, logs, "redirecting plain HTTP to HTTPS")["addr"].(string)

	roots := x509.NewCertPool()
	roots.AddCert(first)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/healthz", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Fatalf("got %d with serial %d", resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Int64())
	}
	if l := waitForLogLine(t, logs, "request"); l["remote"] != "198.51.100.1" {
		t.Errorf("the trusted proxy's X-Forwarded-For is not the remote address: %v", l)
	}

	t.Run("plain HTTP is redirected to the public host whatever the Host header", func(t *testing.T) {
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodPost, "http://"+redirectAddr+"/oauth/authorize?client_id=a&state=b", strings.NewReader("x=1"))
		req.Host = "evil.example"
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := "https://sso.example.com:8443/oauth/authorize?client_id=a&state=b"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("got %d to %q, want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})

	t.Run("a SIGHUP serves the renewed certificate to new connections", func(t *testing.T) {
		roots.AddCert(writeCertPair(t, certPath, keyPath, 2))
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for servedSerial(t, addr, roots) != 2 {
			if time.Now().After(deadline) {
				t.Fatalf("still serving the first certificate after SIGHUP; logs:\n%s", logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if l := waitForLogLine(t, logs, "TLS certificate reloaded"); l["serial"] != "02" {
			t.Errorf("reload log line %v", l)
		}
	})
}

func TestServeOverPlainHTTPSurvivesSIGHUP(t *testing.T) {
	setServeEnv(t, nil)
	cfg, err := loadServeConfig(t)
	if err != nil {
		t.Fatal(err)
	}
	logs, addr := startServeBridge(t, cfg)
	// Without the bridge's handler, Go's default action for SIGHUP ends this test binary.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForLogLine(t, logs, "SIGHUP received: nothing to reload without SSOBRIDGE_TLS_CERT; other settings take effect on restart")
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("the bridge stopped answering after SIGHUP: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz after SIGHUP: %d", resp.StatusCode)
	}
}

func TestRedirectToHTTPSKeepsPathAndQueryAndNeverTheRequestsHost(t *testing.T) {
	h := redirectToHTTPS("sso.example.com")
	tests := []struct {
		name, method, target, host, want string
	}{
		{"a path and query are kept", "GET", "/oauth/authorize?client_id=a&redirect_uri=https%3A%2F%2Fmm.example.com%2F&state=x%20y", "sso.example.com",
			"https://sso.example.com/oauth/authorize?client_id=a&redirect_uri=https%3A%2F%2Fmm.example.com%2F&state=x%20y"},
		{"a hostile Host header does not change the target", "GET", "/x", "evil.example", "https://sso.example.com/x"},
		{"an absolute-form request names no other host", "GET", "http://evil.example/x?y=1", "evil.example", "https://sso.example.com/x?y=1"},
		{"a path starting with two slashes stays on the public host", "GET", "//evil.example/x", "sso.example.com", "https://sso.example.com//evil.example/x"},
		{"an escaped slash stays escaped", "GET", "/a%2Fb", "sso.example.com", "https://sso.example.com/a%2Fb"},
		{"the root", "GET", "/", "sso.example.com", "https://sso.example.com/"},
		{"a POST is redirected with 308 too", "POST", "/oauth/token", "sso.example.com", "https://sso.example.com/oauth/token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != tt.want {
				t.Errorf("got %d to %q, want 308 to %q", rec.Code, rec.Header().Get("Location"), tt.want)
			}
		})
	}
}

func TestServeRefusesBadDeploymentSettingsNamingTheSetting(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCertPair(t, cert, key, 1)
	otherKey := filepath.Join(dir, "other.key")
	writeCertPair(t, "", otherKey, 2)
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("hello"))
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		env  map[string]string
		says string
	}{
		{"a certificate without its key", map[string]string{"SSOBRIDGE_TLS_CERT": cert}, "SSOBRIDGE_TLS_KEY (--tls-key): is missing"},
		{"a key without its certificate", map[string]string{"SSOBRIDGE_TLS_KEY": key}, "SSOBRIDGE_TLS_CERT (--tls-cert): is missing"},
		{"an unreadable certificate", map[string]string{"SSOBRIDGE_TLS_CERT": missing, "SSOBRIDGE_TLS_KEY": key}, "SSOBRIDGE_TLS_CERT (--tls-cert): cannot read the certificate"},
		{"an unreadable key", map[string]string{"SSOBRIDGE_TLS_CERT": cert, "SSOBRIDGE_TLS_KEY": missing}, "SSOBRIDGE_TLS_KEY (--tls-key): cannot read the private key"},
		{"a certificate file without a certificate", map[string]string{"SSOBRIDGE_TLS_CERT": notPEM, "SSOBRIDGE_TLS_KEY": key}, "SSOBRIDGE_TLS_CERT (--tls-cert): " + notPEM + ": holds no PEM certificate"},
		{"the files swapped", map[string]string{"SSOBRIDGE_TLS_CERT": key, "SSOBRIDGE_TLS_KEY": cert}, "SSOBRIDGE_TLS_CERT (--tls-cert)"},
		{"a key of another certificate", map[string]string{"SSOBRIDGE_TLS_CERT": cert, "SSOBRIDGE_TLS_KEY": otherKey}, "SSOBRIDGE_TLS_KEY (--tls-key): " + otherKey + ": tls: private key does not match public key"},
		{"a redirect listener without TLS", map[string]string{"SSOBRIDGE_HTTP_REDIRECT_LISTEN": ":80"}, "SSOBRIDGE_HTTP_REDIRECT_LISTEN (--http-redirect-listen): redirects to HTTPS, which the bridge serves only with SSOBRIDGE_TLS_CERT and SSOBRIDGE_TLS_KEY"},
		{"a redirect listener without a port", map[string]string{"SSOBRIDGE_HTTP_REDIRECT_LISTEN": "localhost", "SSOBRIDGE_TLS_CERT": cert, "SSOBRIDGE_TLS_KEY": key}, "SSOBRIDGE_HTTP_REDIRECT_LISTEN (--http-redirect-listen): \"localhost\" is not host:port"},
		{"a redirect listener for an http:// public URL", map[string]string{"SSOBRIDGE_HTTP_REDIRECT_LISTEN": ":80", "SSOBRIDGE_TLS_CERT": cert, "SSOBRIDGE_TLS_KEY": key, "SSOBRIDGE_PUBLIC_URL": "http://sso.example.com"}, "SSOBRIDGE_HTTP_REDIRECT_LISTEN (--http-redirect-listen): redirects to the public URL's host over HTTPS"},
		{"a bad CIDR among the trusted proxies", map[string]string{"SSOBRIDGE_TRUSTED_PROXIES": "10.0.0.0/8, 10.0.0.0/33"}, "SSOBRIDGE_TRUSTED_PROXIES (--trusted-proxies): \"10.0.0.0/33\" is not a CIDR range"},
		{"a host name among the trusted proxies", map[string]string{"SSOBRIDGE_TRUSTED_PROXIES": "proxy.internal"}, "SSOBRIDGE_TRUSTED_PROXIES (--trusted-proxies): \"proxy.internal\" is not an IP address or a CIDR range"},
		{"an unreadable GitLab CA file", map[string]string{"SSOBRIDGE_GITLAB_CA_FILE": missing}, "SSOBRIDGE_GITLAB_CA_FILE (--gitlab-ca-file): cannot read it"},
		{"a GitLab CA file without a certificate", map[string]string{"SSOBRIDGE_GITLAB_CA_FILE": notPEM}, "SSOBRIDGE_GITLAB_CA_FILE (--gitlab-ca-file): " + notPEM + ": holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setServeEnv(t, tt.env)
			code, _, stderr := runCmd(t, "serve")
			if code != 1 || !strings.Contains(stderr, tt.says) {
				t.Fatalf("exit %d, stderr %q; want it to say %q", code, stderr, tt.says)
			}
		})
	}
}

func TestTrustedProxiesTakeAddressesAndRanges(t *testing.T) {
	s := &setting{name: "trusted-proxies", value: " 10.0.0.0/8, 192.0.2.7,,2001:db8::1 , 2001:db8:1::/48"}
	nets, err := parseTrustedProxies(s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nets {
		got = append(got, n.String())
	}
	if want := "10.0.0.0/8 192.0.2.7/32 2001:db8::1/128 2001:db8:1::/48"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
	if nets, err := parseTrustedProxies(&setting{name: "trusted-proxies"}); err != nil || nets != nil {
		t.Errorf("empty: %v %v, want no proxy trusted", nets, err)
	}
}

func TestGitLabCAFileIsTrustedForCallsToGitLab(t *testing.T) {
	gitlab := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"https://` + r.Host + `"}`))
	}))
	gitlab.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	gitlab.StartTLS()
	defer gitlab.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gitlab.Certificate().Raw}))

	ping := func(t *testing.T, env map[string]string) error {
		t.Helper()
		setServeEnv(t, env)
		cfg, err := loadServeConfig(t)
		if err != nil {
			t.Fatal(err)
		}
		up, err := cfg.upstreams[0].build(nil)
		if err != nil {
			t.Fatal(err)
		}
		return up.(upstream.Pinger).Ping(context.Background())
	}
	t.Run("without the CA file GitLab's certificate is refused", func(t *testing.T) {
		err := ping(t, map[string]string{"SSOBRIDGE_GITLAB_URL": gitlab.URL})
		var ue *upstream.Error
		if !errors.As(err, &ue) || ue.Kind != upstream.KindTLS {
			t.Errorf("got %v, want a TLS failure", err)
		}
	})
	t.Run("with the CA file GitLab answers", func(t *testing.T) {
		if err := ping(t, map[string]string{"SSOBRIDGE_GITLAB_URL": gitlab.URL, "SSOBRIDGE_GITLAB_CA_FILE": caFile}); err != nil {
			t.Errorf("ping: %v", err)
		}
	})
}

func TestServeHelpListsTheTLSAndProxySettings(t *testing.T) {
	clearEnv(t)
	code, help, _ := runCmd(t, "serve", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"tls-cert", "tls-key", "http-redirect-listen", "trusted-proxies", "gitlab-ca-file"} {
		env := "SSOBRIDGE_" + strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
		if !strings.Contains(help, "--"+s+", "+env) {
			t.Errorf("help lacks --%s, %s", s, env)
		}
	}
	for _, says := range []string{"SIGHUP", "HTTPS_PROXY", "NO_PROXY", "never from X-Forwarded-Host"} {
		if !strings.Contains(help, says) {
			t.Errorf("help does not mention %s", says)
		}
	}
}
