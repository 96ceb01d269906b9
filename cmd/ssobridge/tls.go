package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"
)

// certReloader serves the certificate pair that two settings name and reads the files again on
// reload, so that a renewed certificate is taken up without a restart: connections already open
// keep the certificate they were made with, new ones get the new one.
type certReloader struct {
	cert, key *setting
	current   atomic.Pointer[tls.Certificate]
}

// newCertReloader loads the pair once; an error names the setting whose file is at fault.
func newCertReloader(cert, key *setting) (*certReloader, error) {
	r := &certReloader{cert: cert, key: key}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the pair again. A pair that does not load, or whose key is not the certificate's,
// leaves the one being served in place: a renewal written half-way must not take HTTPS down.
func (r *certReloader) reload() error {
	c, err := loadKeyPair(r.cert, r.key)
	if err != nil {
		return err
	}
	r.current.Store(c)
	return nil
}

// leaf is the certificate being served.
func (r *certReloader) leaf() *x509.Certificate { return r.current.Load().Leaf }

// tlsConfig serves whichever pair is current at each handshake.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current.Load(), nil
		},
		// Listed here because the server is given a TLS listener rather than its certificate.
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// reloadOn reloads the pair each time a signal arrives on sigs (SIGHUP), until ctx ends.
func (r *certReloader) reloadOn(ctx context.Context, sigs <-chan os.Signal, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			if err := r.reload(); err != nil {
				log.Error("TLS certificate not reloaded; still serving the previous one",
					append([]any{"error", err.Error()}, certAttrs(r.leaf())...)...)
				continue
			}
			logCertificate(log, "TLS certificate reloaded", r.leaf())
		}
	}
}

// ignoreHangups answers each SIGHUP of a bridge without TLS with a log line, until ctx ends:
// there is no certificate to reload, and every other setting is read only at start.
func ignoreHangups(ctx context.Context, sigs <-chan os.Signal, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			log.Info("SIGHUP received: nothing to reload without SSOBRIDGE_TLS_CERT; other settings take effect on restart")
		}
	}
}

// logCertificate says which certificate is served, and warns when it has expired, since
// clients will refuse it.
func logCertificate(log *slog.Logger, msg string, c *x509.Certificate) {
	if time.Now().After(c.NotAfter) {
		log.Warn(msg+"; it has expired and clients will refuse it", certAttrs(c)...)
		return
	}
	log.Info(msg, certAttrs(c)...)
}

func certAttrs(c *x509.Certificate) []any {
	return []any{"serial", hex.EncodeToString(c.SerialNumber.Bytes()), "subject", c.Subject.String(),
		"dns_names", c.DNSNames, "not_after", c.NotAfter.UTC().Format(time.RFC3339)}
}

// loadKeyPair reads a PEM certificate (with its chain) and its private key. The two may be one
// file named twice.
func loadKeyPair(cert, key *setting) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(cert.value)
	if err != nil {
		return nil, cert.errorf("cannot read the certificate: %v", err)
	}
	keyPEM, err := os.ReadFile(key.value)
	if err != nil {
		return nil, key.errorf("cannot read the private key: %v", err)
	}
	// Checked on its own first so that a bad certificate is not reported as a bad key.
	if _, err := parseCertificates(certPEM); err != nil {
		return nil, cert.errorf("%s: %v", cert.value, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, key.errorf("%s: %v; it must be the PEM private key of the certificate in %s (%s)", key.value, err, cert.env(), cert.value)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, cert.errorf("%s: %v", cert.value, err)
		}
	}
	return &pair, nil
}

// parseCertificates returns the CERTIFICATE blocks of a PEM file, skipping any other block
// (a key kept in the same file).
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
	}
	return certs, nil
}

// loadCAFile returns the system's certificate authorities with those of the PEM file added, for
// a GitLab whose certificate a private CA signed.
func loadCAFile(s *setting) (*x509.CertPool, error) {
	pool, err := loadCAPath(s.value)
	if err != nil {
		return nil, s.errorf("%v", err)
	}
	return pool, nil
}

// loadCAPath is loadCAFile for a file named in the providers file.
func loadCAPath(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read it: %v", err)
	}
	certs, err := parseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("cannot read the system's certificate authorities to add %s to: %v", path, err)
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// redirectToHTTPS answers every plain-HTTP request with a redirect to the same path and query
// at host over HTTPS. The host is the public URL's, never the request's: the Host header is the
// client's to choose, and following it would make the bridge an open redirect. 308 keeps the
// method and body of a POST.
func redirectToHTTPS(host string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
	})
}
