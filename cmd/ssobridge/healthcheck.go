package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const healthcheckSummary = `Asks a running bridge whether it is up and exits 0 if it answers 200, 1 otherwise: a health
check for images without a shell or curl, such as the distroless one deploy/Dockerfile builds.
Without --url it reads the same settings as "ssobridge serve", so in the bridge's container it
finds the bridge by itself: http://ADMIN_LISTEN/healthz, or LISTEN/healthz when the operators'
listener is off (over https when the bridge serves TLS itself, without checking its certificate:
the question is whether the process answers); an unspecified host (":9090", "0.0.0.0:9090") is
asked on 127.0.0.1.`

func runHealthcheck(args []string, stdout, stderr io.Writer) error {
	st := newSettings("healthcheck", healthcheckSummary, stderr)
	listen := st.add("listen", ":8080", "the bridge's address, asked when the operators' listener is off")
	adminListen := st.add("admin-listen", "127.0.0.1:9090", "the operators' listener of the bridge, asked when set")
	tlsCert := st.add("tls-cert", "", "the bridge's certificate file: when set, its --listen serves HTTPS")
	target := st.fs.String("url", "", "the URL to ask instead, such as http://127.0.0.1:9090/readyz")
	ready := st.fs.Bool("ready", false, "ask /readyz (the store and GitLab answer the bridge) rather than /healthz (the process is up)")
	timeout := st.fs.Duration("timeout", 3*time.Second, "how long to wait for the answer (default 3s)")
	if err := st.parse(args); err != nil {
		return err
	}
	u := *target
	// Never through a proxy: the bridge's environment may name one for its calls to GitLab.
	transport := &http.Transport{Proxy: nil}
	if u == "" {
		path := "/healthz"
		if *ready {
			path = "/readyz"
		}
		s, scheme := adminListen, "http"
		if s.value == "" {
			s = listen
			if tlsCert.value != "" {
				// The bridge's own listener, asked on loopback whether the process answers; its
				// certificate names the public host, not 127.0.0.1, and serve checked it at start.
				scheme = "https"
				transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
			}
		}
		host, port, err := net.SplitHostPort(s.value)
		if err != nil || port == "" {
			return s.errorf("%q is not host:port", s.value)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		u = scheme + "://" + net.JoinHostPort(host, port) + path
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	client := &http.Client{Transport: transport}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %s", u, resp.Status)
	}
	fmt.Fprintf(stdout, "healthy: %s answered %s\n", u, resp.Status)
	return nil
}
