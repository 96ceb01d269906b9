package storetest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// installHint is the one thing to do when the Redis tests cannot run.
const installHint = "redis-server is not on PATH: install it (apt-get install -y redis-server) to run the Redis tests"

// RedisURL starts a redis-server of its own for the calling test and returns its URL,
// redis://127.0.0.1:PORT/0. The server listens on loopback only, keeps nothing on disk, and is
// stopped when the test ends. Every call gets a new server, so that tests are isolated from each
// other without agreeing on key prefixes, and a test may shut its server down (as the error
// tests do) without disturbing any other; a server starts in a few milliseconds.
//
// Without redis-server the test is skipped, except under CI (the CI environment variable set to
// anything but "false"), where a missing server is a broken CI image and fails the test.
func RedisURL(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" {
			t.Fatal(installHint)
		}
		t.Skip(installHint)
	}
	dir := t.TempDir()
	// The port is chosen by binding and releasing it, so another process can take it in between;
	// a few attempts make that harmless.
	const attempts = 3
	var failure string
	for i := range attempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port for redis-server: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		logPath := filepath.Join(dir, fmt.Sprintf("redis-%d.log", i))
		stop, err := startRedis(bin, dir, port, logPath)
		if err == nil {
			t.Cleanup(stop)
			return "redis://" + addr + "/0"
		}
		log, _ := os.ReadFile(logPath)
		failure = fmt.Sprintf("%v\nredis-server output:\n%s", err, log)
	}
	t.Fatalf("redis-server did not start after %d attempts: %s", attempts, failure)
	return ""
}

// startRedis starts redis-server and waits until it answers PING. It returns the function that
// stops it, which may be called after the server has already gone.
func startRedis(bin, dir string, port int, logPath string) (stop func(), err error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop = func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) == nil {
			return stop, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("redis-server on port %d exited before answering PING", port)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer PING within 10s", port)
		}
	}
}

// ping speaks just enough RESP to see the server is ready, so that starting a server does not
// depend on the client library the tests are checking.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
