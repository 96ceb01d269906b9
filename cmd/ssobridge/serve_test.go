package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-release
		_, _ = w.Write([]byte("finished"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveUntilDone(ctx, ln, h, slog.New(slog.DiscardHandler)) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-inHandler
	cancel() // SIGTERM arrives while the request is in the handler
	// New connections are refused once the shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after the shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if body := <-got; body != "finished" {
		t.Fatalf("the request in flight got %q", body)
	}
	if err := <-served; err != nil {
		t.Fatalf("serveUntilDone: %v", err)
	}
}

func TestTuneGCSetsTheBridgesTargetUnlessGOGCIsSet(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	t.Setenv("GOGC", "") // restores the variable when the test ends
	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != bridgeGCPercent {
		t.Errorf("without GOGC: %d, want %d", got, bridgeGCPercent)
	}
	t.Setenv("GOGC", "100")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100: %d, want it left at 100", got)
	}
}

// The operators' listener serves traces that name people: reachable from other hosts, it must ask
// for a token, and the bridge does not start without one.
func TestServeRefusesAnOperatorsListenerOtherHostsReachWithoutAToken(t *testing.T) {
	for _, tt := range []struct {
		listen, token string
		refused       bool
	}{
		{"0.0.0.0:9090", "", true},
		{":9090", "", true},
		{"[::]:9090", "", true},
		{"10.1.2.3:9090", "", true},
		{"admin.internal:9090", "", true},
		{"0.0.0.0:9090", "   ", true},
		{"0.0.0.0:9090", "a5f0c9e1d3b7a5f0c9e1d3b7a5f0c9e1", false},
		{"127.0.0.1:9090", "", false},
		{"127.0.0.2:9090", "", false},
		{"[::1]:9090", "", false},
		{"localhost:9090", "", false},
		{"", "", false},
	} {
		setServeEnv(t, map[string]string{"SSOBRIDGE_ADMIN_LISTEN": tt.listen, "SSOBRIDGE_ADMIN_TOKEN": tt.token})
		_, err := loadServeConfig(t)
		if !tt.refused {
			if err != nil {
				t.Errorf("admin listener %q, token %q: %v", tt.listen, tt.token, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "SSOBRIDGE_ADMIN_TOKEN") || !strings.Contains(err.Error(), "openssl rand -hex 32") ||
			!strings.Contains(err.Error(), tt.listen) {
			t.Errorf("admin listener %q, token %q: %v; want a refusal naming SSOBRIDGE_ADMIN_TOKEN, the listener and how to make a token", tt.listen, tt.token, err)
		}
	}
}
