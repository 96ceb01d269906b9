package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
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
