package storetest

import (
	"bufio"
	"fmt"
	"io"
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
	bin := redisServer(t)
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
		stop, err := startRedis(bin, dir, port, logPath, nil)
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

// redisServer returns the path of redis-server, skipping the test without one, except under CI
// (the CI environment variable set to anything but "false"), where it fails it.
func redisServer(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" {
			t.Fatal(installHint)
		}
		t.Skip(installHint)
	}
	return bin
}

// startRedis starts redis-server and waits until it answers PING. It returns the function that
// stops it, which may be called after the server has already gone.
func startRedis(bin, dir string, port int, logPath string, extra []string, lead ...string) (stop func(), err error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	}
	cmd := exec.Command(bin, append(append(lead, args...), extra...)...)
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

// RedisClusterURL starts a Redis Cluster of three masters of its own for the calling test, each
// serving a third of the slots, and returns its URL as the bridge takes it:
// redis://127.0.0.1:P1?addr=127.0.0.1:P2&addr=127.0.0.1:P3. Like RedisURL, it is skipped without
// redis-server except under CI, and stopped when the test ends.
func RedisClusterURL(t testing.TB) string {
	t.Helper()
	bin := redisServer(t)
	dir := t.TempDir()
	slots := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	addrs := make([]string, len(slots))
	for i := range slots {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port for redis-server: %v", err)
		}
		nodeDir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(nodeDir, 0o700); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(nodeDir, "redis.log")
		stop, err := startRedis(bin, nodeDir, port, logPath, []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "5000"})
		if err != nil {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("cluster node %d: %v\nredis-server output:\n%s", i, err, log)
		}
		t.Cleanup(stop)
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	for i, r := range slots {
		if _, err := command(addrs[i], "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(r[0]), strconv.Itoa(r[1])); err != nil {
			t.Fatalf("cluster node %d: assigning slots: %v", i, err)
		}
	}
	for _, other := range addrs[1:] {
		host, port, _ := net.SplitHostPort(other)
		if _, err := command(addrs[0], "CLUSTER", "MEET", host, port); err != nil {
			t.Fatalf("cluster: joining %s: %v", other, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range addrs {
		for {
			info, err := command(addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster did not come up within 30s: %s answers %q (%v)", addr, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
}

// RedisSentinelURL starts a redis-server and a Sentinel that watches it as master "ssobridge"
// for the calling test, and returns the URL the bridge takes for them:
// redis://127.0.0.1:SENTINEL/0?master_name=ssobridge. Like RedisURL, it is skipped without
// redis-server except under CI, and stopped when the test ends.
func RedisSentinelURL(t testing.TB) string {
	t.Helper()
	master := RedisURL(t) // skips or fails as RedisURL does
	masterAddr := strings.TrimSuffix(strings.TrimPrefix(master, "redis://"), "/0")
	host, masterPort, _ := net.SplitHostPort(masterAddr)
	bin := redisServer(t)
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatalf("finding a free port for the sentinel: %v", err)
	}
	conf := filepath.Join(dir, "sentinel.conf")
	config := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor ssobridge %s %s 1\nsentinel down-after-milliseconds ssobridge 5000\n", port, dir, host, masterPort)
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "sentinel.log")
	// The sentinel rewrites its configuration file, so it gets one of its own, given first.
	stop, err := startRedis(bin, dir, port, logPath, nil, conf, "--sentinel")
	if err != nil {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("sentinel: %v\nredis-server output:\n%s", err, log)
	}
	t.Cleanup(stop)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := command(addr, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "ssobridge")
		if err == nil && got == host+"\n"+masterPort {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sentinel does not name the master within 10s: %q (%v)", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + addr + "/0?master_name=ssobridge"
}

// command sends one command in RESP and returns its reply: a status, an integer, a bulk string,
// or an array of bulk strings joined by newlines; an error reply is an error.
func command(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("%s", line[1:])
	case strings.HasPrefix(line, "$"):
		return readBulk(r, line)
	case strings.HasPrefix(line, "*"):
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		items := make([]string, 0, max(n, 0))
		for range n {
			head, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			item, err := readBulk(r, strings.TrimRight(head, "\r\n"))
			if err != nil {
				return "", err
			}
			items = append(items, item)
		}
		return strings.Join(items, "\n"), nil
	}
	return line[1:], nil
}

// readBulk reads the body of a bulk string whose header line ($LEN) was head.
func readBulk(r *bufio.Reader, head string) (string, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(head, "$"))
	if err != nil || n < 0 {
		return "", err
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
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
