package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const healthcheckSummary = `Asks a running bridge whether it is up and exits 0 if it answers 200, 1 otherwise: a health
check for images without a shell or curl, such as the distroless one deploy/Dockerfile builds.
Without --url it reads the same settings as "ssobridge serve", so in the bridge's container it
finds the bridge by itself: http://ADMIN_LISTEN/healthz, or http://LISTEN/healthz when the
operators' listener is off; an unspecified host (":9090", "0.0.0.0:9090") is asked on 127.0.0.1.`

func runHealthcheck(args []string, stdout, stderr io.Writer) error {
	st := newSettings("healthcheck", healthcheckSummary, stderr)
	listen := st.add("listen", ":8080", "the bridge's address, asked when the operators' listener is off")
	adminListen := st.add("admin-listen", "127.0.0.1:9090", "the operators' listener of the bridge, asked when set")
	target := st.fs.String("url", "", "the URL to ask instead, such as http://127.0.0.1:9090/readyz")
	ready := st.fs.Bool("ready", false, "ask /readyz (the store and GitLab answer the bridge) rather than /healthz (the process is up)")
	timeout := st.fs.Duration("timeout", 3*time.Second, "how long to wait for the answer (default 3s)")
	if err := st.parse(args); err != nil {
		return err
	}
	u := *target
	if u == "" {
		path := "/healthz"
		if *ready {
			path = "/readyz"
		}
		s := adminListen
		if s.value == "" {
			s = listen
		}
		host, port, err := net.SplitHostPort(s.value)
		if err != nil || port == "" {
			return s.errorf("%q is not host:port", s.value)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		u = "http://" + net.JoinHostPort(host, port) + path
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	// Never through a proxy: the bridge's environment may name one for its calls to GitLab.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
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
