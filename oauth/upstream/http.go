package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"time"
)

// HTTPOption changes how NewHTTPClient reaches a provider.
type HTTPOption func(*http.Transport)

// WithRootCAs makes the client trust pool's certificate authorities instead of the system's, for
// a provider whose certificate a private CA signed. Pass a pool that also holds the system's
// authorities (x509.SystemCertPool) when the provider may be reached through a public one too.
func WithRootCAs(pool *x509.CertPool) HTTPOption {
	return func(t *http.Transport) {
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
}

// WithProxy chooses the proxy for each upstream request in place of http.ProxyFromEnvironment,
// which reads HTTP_PROXY, HTTPS_PROXY and NO_PROXY once per process and so cannot be tested with
// different values in one process.
func WithProxy(proxy func(*http.Request) (*url.URL, error)) HTTPOption {
	return func(t *http.Transport) { t.Proxy = proxy }
}

// NewHTTPClient returns the client used for upstream calls: one pooled transport, proxies from
// the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, as http.ProxyFromEnvironment reads them),
// and timeouts short enough that a provider that does not answer fails the login with a clear error
// instead of hanging the browser.
func NewHTTPClient(opts ...HTTPOption) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Set rather than inherited: http.DefaultTransport is a global that anything may have changed.
	t.Proxy = http.ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.ResponseHeaderTimeout = 15 * time.Second
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 90 * time.Second
	for _, o := range opts {
		o(t)
	}
	return &http.Client{Transport: t, Timeout: 20 * time.Second}
}
