package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssobridge/ssobridge/mattermost"
	"github.com/ssobridge/ssobridge/oauth"
)

// The steps of a sign-in, told apart by the host and path of each request the client makes.
const (
	stepAuthorize = iota
	stepGitLab
	stepCallback
	stepToken
	stepUser
	stepOther
	numSteps
)

var stepNames = [numSteps]string{"authorize", "gitlab", "callback", "token", "user", "other"}

// loginTrace collects the time of each step of one operation. An operation's requests are made
// one after another, so it needs no lock.
type loginTrace struct {
	d [numSteps]time.Duration
	n [numSteps]int
}

type traceKey struct{}

// stepTransport times every request, up to the end of its body, and charges it to the step its
// host and path name.
type stepTransport struct {
	base   http.RoundTripper
	bridge string
	paths  map[string]int
}

func newStepTransport(t *target, concurrency int) *stepTransport {
	path := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			return raw
		}
		return u.Path
	}
	s := t.client.Settings
	return &stepTransport{
		// Mattermost's transport keeps 2 idle connections per host; at this concurrency that
		// would open and close a connection for most requests and measure TCP set-up, or run
		// out of ports, so the bench keeps one per worker.
		base: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4 * concurrency,
			MaxIdleConnsPerHost: 2 * concurrency,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 3 * time.Second,
		},
		bridge: strings.ToLower(t.bridge.Host),
		paths: map[string]int{
			path(s.AuthEndpoint):                          stepAuthorize,
			path(oauth.CallbackURLFor(t.bridge.String())): stepCallback,
			path(s.TokenEndpoint):                         stepToken,
			path(s.UserAPIEndpoint):                       stepUser,
		},
	}
}

func (t *stepTransport) step(r *http.Request) int {
	if !strings.EqualFold(r.URL.Host, t.bridge) {
		return stepGitLab
	}
	if s, ok := t.paths[r.URL.Path]; ok {
		return s
	}
	return stepOther
}

func (t *stepTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tr, _ := r.Context().Value(traceKey{}).(*loginTrace)
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	if tr == nil {
		return resp, err
	}
	step := t.step(r)
	if err != nil {
		tr.d[step] += time.Since(start)
		tr.n[step]++
		return resp, err
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, done: func() {
		tr.d[step] += time.Since(start)
		tr.n[step]++
	}}
	return resp, nil
}

// timedBody calls done once, when the body has been read to its end or closed.
type timedBody struct {
	io.ReadCloser
	done     func()
	finished bool
}

func (b *timedBody) finish() {
	if !b.finished {
		b.finished = true
		b.done()
	}
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.finish()
	return b.ReadCloser.Close()
}

// operation is one operation of a phase; worker is the index of the goroutine running it.
type operation func(ctx context.Context, worker int) error

type phaseResult struct {
	elapsed   time.Duration
	completed int64
	errors    int64
	byKind    map[string]int64
	// example is the first error of each kind, whole: what it names (a URL, a page's title, the
	// bridge's description) says what to change.
	example map[string]string
	total   []time.Duration
	steps   [numSteps][]time.Duration
}

// runPhase runs op on concurrency goroutines until count operations have been started (count >
// 0) or until the duration has passed, and collects their times. keep says whether to keep the
// samples (not for the warmup).
func runPhase(ctx context.Context, concurrency, count int, d time.Duration, keep bool, op operation) *phaseResult {
	var started atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	parts := make([]*phaseResult, concurrency)
	var wg sync.WaitGroup
	for w := range concurrency {
		p := &phaseResult{byKind: map[string]int64{}, example: map[string]string{}}
		parts[w] = p
		wg.Go(func() {
			for ctx.Err() == nil {
				if count > 0 {
					if started.Add(1) > int64(count) {
						return
					}
				} else if !time.Now().Before(deadline) {
					return
				}
				tr := &loginTrace{}
				t0 := time.Now()
				err := op(context.WithValue(ctx, traceKey{}, tr), w)
				took := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return // stopped, not failed
					}
					p.errors++
					kind := errorKind(err)
					if p.byKind[kind]++; p.byKind[kind] == 1 {
						p.example[kind] = err.Error()
					}
					continue
				}
				p.completed++
				if keep {
					p.total = append(p.total, took)
					for s := range numSteps {
						if tr.n[s] > 0 {
							p.steps[s] = append(p.steps[s], tr.d[s])
						}
					}
				}
			}
		})
	}
	wg.Wait()
	all := &phaseResult{elapsed: time.Since(start), byKind: map[string]int64{}, example: map[string]string{}}
	for _, p := range parts {
		all.completed += p.completed
		all.errors += p.errors
		for k, v := range p.byKind {
			all.byKind[k] += v
			if _, ok := all.example[k]; !ok {
				all.example[k] = p.example[k]
			}
		}
		all.total = append(all.total, p.total...)
		for s := range numSteps {
			all.steps[s] = append(all.steps[s], p.steps[s]...)
		}
	}
	return all
}

// errorKind is an error's class: its step and reason, with the HTTP status, but not the URL,
// state or body that make every message different.
func errorKind(err error) string {
	var (
		be *mattermost.BrowserError
		ce *mattermost.CallbackError
		te *mattermost.TokenError
		ue *mattermost.UserError
	)
	withStatus := func(s string, status int) string {
		if status != 0 {
			return fmt.Sprintf("%s (HTTP %d)", s, status)
		}
		return s
	}
	switch {
	case errors.As(err, &be):
		return withStatus("browser: "+be.Reason.Error(), be.Status)
	case errors.As(err, &ce):
		if ce.OAuthError != "" {
			return "callback: " + ce.Reason.Error() + ": " + ce.OAuthError
		}
		return "callback: " + ce.Reason.Error()
	case errors.As(err, &te):
		if te.OAuthError != "" {
			return withStatus("token: "+te.Reason.Error()+": "+te.OAuthError, te.Status)
		}
		return withStatus("token: "+te.Reason.Error(), te.Status)
	case errors.As(err, &ue):
		return withStatus("user: "+ue.Reason.Error(), ue.Status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return err.Error()
}

// mint goes through authorize, GitLab and the callback, as Login does (mattermost.Client.Authorize),
// and returns the code the bridge sends back to Mattermost; token mode needs the code alone.
func (t *target) mint(ctx context.Context, rt http.RoundTripper) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := t.client
	c.Browser = &http.Client{Jar: jar, Transport: rt, Timeout: 30 * time.Second}
	code, _, _, err := c.Authorize(ctx)
	return code, err
}

// fetchUser makes Mattermost's /api/v4/user request (mattermost.Client.UserRequest) and checks
// the answer is a user.
func fetchUser(ctx context.Context, client *http.Client, mm *mattermost.Client, token string) error {
	req, err := mm.UserRequest(ctx, token)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/api/v4/user: %s", resp.Status)
	}
	if !bytes.HasPrefix(body, []byte("{")) || !bytes.Contains(body, []byte(`"id":`)) {
		return errors.New("/api/v4/user: the answer is not a user")
	}
	return nil
}
