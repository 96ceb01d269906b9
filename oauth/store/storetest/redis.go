package storetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	return StartRedis(t).URL()
}

// Redis is a redis-server a test started, which it may pause, kill and start again.
type Redis struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	stop func()
	n    int // starts so far, for the log files' names
}

// RedisOption changes how StartRedis starts the server.
type RedisOption func(*Redis)

// WithAOF makes the server keep an append-only file, fsynced on every write (appendfsync
// always), in its directory: a write it acknowledged survives a kill.
func WithAOF() RedisOption {
	return func(r *Redis) { r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "always") }
}

// ReplicaOf makes the server a replica of master.
func ReplicaOf(master *Redis) RedisOption {
	return func(r *Redis) { r.args = append(r.args, "--replicaof", "127.0.0.1", strconv.Itoa(master.port)) }
}

// WithArgs gives the server more command-line configuration.
func WithArgs(args ...string) RedisOption {
	return func(r *Redis) { r.args = append(r.args, args...) }
}

// StartRedis starts a redis-server for the calling test (see RedisURL), skipped or failed as
// RedisURL is without one.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: redisServer(t), dir: t.TempDir()}
	for _, o := range opts {
		o(r)
	}
	// The port is chosen by binding and releasing it, so another process can take it in between;
	// a few attempts make that harmless.
	const attempts = 3
	var failure string
	for range attempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port for redis-server: %v", err)
		}
		r.port = port
		if failure = r.start(); failure == "" {
			t.Cleanup(r.Kill)
			return r
		}
	}
	t.Fatalf("redis-server did not start after %d attempts: %s", attempts, failure)
	return nil
}

// start runs the server on its port and directory; "" when it answers PING, else what went wrong.
func (r *Redis) start() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	logPath := filepath.Join(r.dir, fmt.Sprintf("redis-%d.log", r.n))
	cmd, stop, err := startRedis(r.bin, r.dir, r.port, logPath, r.args)
	if err != nil {
		log, _ := os.ReadFile(logPath)
		return fmt.Sprintf("%v\nredis-server output:\n%s", err, log)
	}
	r.cmd, r.stop = cmd, stop
	return ""
}

// Addr is the server's HOST:PORT.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// URL is the server's URL, database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Pause stops the server's process (SIGSTOP): it keeps its connections and answers nothing,
// as a server that stalls does, until Resume.
func (r *Redis) Pause() { r.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on: what was sent to it meanwhile is answered then.
func (r *Redis) Resume() { r.signal(syscall.SIGCONT) }

func (r *Redis) signal(sig os.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		if err := r.cmd.Process.Signal(sig); err != nil {
			r.t.Errorf("signalling redis-server: %v", err)
		}
	}
}

// Kill ends the server at once (SIGKILL, after a SIGCONT in case it was paused): it writes
// nothing more.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		r.stop()
		r.cmd = nil
	}
}

// Restart starts a killed server again, on the same port and directory: with WithAOF it reads
// back what it had acknowledged.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Kill()
	if failure := r.start(); failure != "" {
		r.t.Fatalf("redis-server did not start again: %s", failure)
	}
}

// Command sends the server one command, outside any client under test, and returns its reply.
func (r *Redis) Command(args ...string) (string, error) { return command(r.Addr(), args...) }

// Fill makes the server full as a production Redis becomes full: maxmemory a little above what
// it holds, the noeviction policy, then writes of its own until the server refuses one for
// memory ("OOM command not allowed"). Every write after that is refused the same way, until
// Unfill.
func (r *Redis) Fill() {
	r.t.Helper()
	used, err := r.usedMemory()
	if err != nil {
		r.t.Fatalf("filling Redis: %v", err)
	}
	for _, set := range [][]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", strconv.FormatInt(used+512<<10, 10)}} {
		if _, err := r.Command("CONFIG", "SET", set[0], set[1]); err != nil {
			r.t.Fatalf("filling Redis: CONFIG SET %s: %v", set[0], err)
		}
	}
	// Ever smaller writes until even a small one is refused; then the bound goes a little below
	// what the server holds, so that memory a closed connection frees makes no room.
	size := 32 << 10
	for i := 0; i < 10000; i++ {
		_, err := r.Command("SET", "storetest:filler:"+strconv.Itoa(i), strings.Repeat("x", size))
		switch {
		case err == nil:
			continue
		case !strings.Contains(err.Error(), "OOM command not allowed"):
			r.t.Fatalf("filling Redis: %v", err)
		case size > 16:
			size /= 4
			continue
		}
		used, err := r.usedMemory()
		if err == nil {
			_, err = r.Command("CONFIG", "SET", "maxmemory", strconv.FormatInt(used-64<<10, 10))
		}
		if err != nil {
			r.t.Fatalf("filling Redis: %v", err)
		}
		return
	}
	r.t.Fatal("filling Redis: it never refused a write for memory")
}

// Unfill lifts the bound Fill set: the server takes writes again.
func (r *Redis) Unfill() {
	r.t.Helper()
	if _, err := r.Command("CONFIG", "SET", "maxmemory", "0"); err != nil {
		r.t.Fatalf("unfilling Redis: %v", err)
	}
}

func (r *Redis) usedMemory() (int64, error) {
	info, err := r.Command("INFO", "memory")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
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

// startRedis starts redis-server and waits until it answers PING. It returns its command and the
// function that stops it, which may be called after the server has already gone. Arguments
// given later win over earlier ones (extra over the defaults, as WithAOF's appendonly does).
func startRedis(bin, dir string, port int, logPath string, extra []string, lead ...string) (cmd *exec.Cmd, stop func(), err error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	}
	cmd = exec.Command(bin, append(append(lead, args...), extra...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting redis-server: %w", err)
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
			return cmd, stop, nil
		}
		select {
		case <-exited:
			return nil, nil, fmt.Errorf("redis-server on port %d exited before answering PING", port)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("redis-server on port %d did not answer PING within 10s", port)
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
		nodeDir := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(nodeDir, 0o700); err != nil {
			t.Fatal(err)
		}
		// A node also listens on its port + 10000, the cluster bus.
		port := startOnFreePort(t, fmt.Sprintf("cluster node %d", i), 10000, func(port int, logPath string) (func(), error) {
			_, stop, err := startRedis(bin, nodeDir, port, logPath, []string{"--cluster-enabled", "yes", "--cluster-node-timeout", "5000"})
			return stop, err
		}, nodeDir)
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
	addr := startSentinel(t, net.JoinHostPort(host, masterPort), "sentinel down-after-milliseconds ssobridge 5000\n")
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

// startSentinel starts a Sentinel that watches the master at masterAddr (HOST:PORT) as
// "ssobridge", quorum 1, with the configuration lines extra, for the calling test, and returns
// its HOST:PORT.
func startSentinel(t testing.TB, masterAddr, extra string) string {
	t.Helper()
	host, masterPort, _ := net.SplitHostPort(masterAddr)
	bin := redisServer(t)
	dir := t.TempDir()
	port := startOnFreePort(t, "sentinel", 0, func(port int, logPath string) (func(), error) {
		conf := filepath.Join(dir, "sentinel.conf")
		config := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor ssobridge %s %s 1\n%s", port, dir, host, masterPort, extra)
		if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
			return nil, err
		}
		// The sentinel rewrites its configuration file, so it gets one of its own, given first.
		_, stop, err := startRedis(bin, dir, port, logPath, nil, conf, "--sentinel")
		return stop, err
	}, dir)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// startOnFreePort starts a server (what, for messages) with start on a free port, and on that
// port + also unless also is 0, logging to a file in dir; it returns the port, and stops the
// server when the test ends. A port is chosen by binding and releasing it, so another process can
// take it in between: a few attempts make that harmless.
func startOnFreePort(t testing.TB, what string, also int, start func(port int, logPath string) (stop func(), err error), dir string) int {
	t.Helper()
	const attempts = 3
	var failure string
	for n := range attempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port for the %s: %v", what, err)
		}
		if also != 0 && !portFree(port+also) {
			failure = fmt.Sprintf("port %d is taken", port+also)
			continue
		}
		logPath := filepath.Join(dir, fmt.Sprintf("redis-%d.log", n+1))
		stop, err := start(port, logPath)
		if err == nil {
			t.Cleanup(stop)
			return port
		}
		log, _ := os.ReadFile(logPath)
		failure = fmt.Sprintf("%v\nredis-server output:\n%s", err, log)
	}
	t.Fatalf("the %s did not start after %d attempts: %s", what, attempts, failure)
	return 0
}

// portFree reports whether a port of the loopback address can be bound now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// command sends one command in RESP and returns its reply: a status, an integer or a bulk
// string as it is, an array as its items (arrays within flattened) joined by newlines; an error
// reply is an error.
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
	items, err := readReply(bufio.NewReader(conn))
	return strings.Join(items, "\n"), err
}

// readReply reads one RESP reply as its items: one for a status, integer or bulk string (none for
// a nil), an array's flattened.
func readReply(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("an empty reply line")
	}
	switch line[0] {
	case '-':
		return nil, errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return []string{string(buf[:n])}, nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		var items []string
		for range n {
			sub, err := readReply(r)
			if err != nil {
				return nil, err
			}
			items = append(items, sub...)
		}
		return items, nil
	}
	return []string{line[1:]}, nil
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

// Replicated is a primary with replicas, watched by one Sentinel, for the calling test.
type Replicated struct {
	Master   *Redis
	Replicas []*Redis
	sentinel string // HOST:PORT
}

// StartReplicated starts a primary, n replicas of it and a Sentinel that watches them as
// "ssobridge" (quorum 1), and waits until the replicas are in sync and the Sentinel is linked to
// them, so that Failover can promote one. opts apply to every server. It is skipped or failed as
// RedisURL is without redis-server.
func StartReplicated(t testing.TB, n int, opts ...RedisOption) *Replicated {
	t.Helper()
	r := &Replicated{Master: StartRedis(t, opts...)}
	deadline := time.Now().Add(30 * time.Second)
	for range n {
		replica := StartRedis(t, append(slices.Clone(opts), ReplicaOf(r.Master))...)
		for {
			info, err := replica.Command("INFO", "replication")
			if err == nil && strings.Contains(info, "master_link_status:up") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a replica did not sync with the primary within 30s: %q (%v)", info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.Replicas = append(r.Replicas, replica)
	}
	r.sentinel = startSentinel(t, r.Master.Addr(), "sentinel down-after-milliseconds ssobridge 2000\nsentinel failover-timeout ssobridge 10000\n")
	// The sentinel learns of the replicas from the primary, then talks to them: it promotes only a
	// replica it is linked to and that is linked to the primary.
	for _, replica := range r.Replicas {
		name := "name\n" + replica.Addr() + "\n"
		for {
			got, err := command(r.sentinel, "SENTINEL", "REPLICAS", "ssobridge")
			if entry, ok := sentinelEntry(got, name); err == nil && ok && strings.Contains(entry, "flags\nslave\n") &&
				strings.Contains(entry, "master-link-status\nok\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sentinel was not linked to replica %s within 30s: %q (%v)", replica.Addr(), got, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return r
}

// sentinelEntry cuts, from a flattened SENTINEL REPLICAS reply, the entry that starts with name.
func sentinelEntry(reply, name string) (string, bool) {
	i := strings.Index(reply, name)
	if i < 0 {
		return "", false
	}
	entry := reply[i+len(name):]
	if j := strings.Index(entry, "\nname\n"); j >= 0 {
		entry = entry[:j+1]
	}
	return entry, true
}

// URL is the bridge's URL for the Sentinel.
func (r *Replicated) URL() string { return "redis://" + r.sentinel + "/0?master_name=ssobridge" }

// Failover makes the Sentinel promote a replica (SENTINEL FAILOVER) and waits until it names one
// as the primary, and that one says it is.
func (r *Replicated) Failover(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	// A replica whose last answer to the sentinel is not recent is no good to promote (NOGOODSLAVE):
	// the sentinel asks again within seconds.
	for {
		_, err := command(r.sentinel, "SENTINEL", "FAILOVER", "ssobridge")
		if err == nil {
			break
		}
		if !strings.HasPrefix(err.Error(), "NOGOODSLAVE") || time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		got, err := command(r.sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "ssobridge")
		for _, replica := range r.Replicas {
			if err == nil && got == strings.Replace(replica.Addr(), ":", "\n", 1) {
				if role, rerr := replica.Command("ROLE"); rerr == nil && strings.HasPrefix(role, "master") {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failover did not complete within 30s: the sentinel names %q (%v)", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
