package memstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// ---- authorizations parked, counted for store.PendingCaps ----

// pendingIndex counts the authorizations parked within their TTL and not taken yet, by browser
// and by source, as redisstore's sorted sets do. Authorizations expire in the order they were
// parked (the bridge parks them all with one TTL), so a queue in that order finds the expired
// ones at its front; a take forgets its key at once, and leaves it in the queue and the
// browser's list (which skip keys no longer counted) until it reaches their front.
type pendingIndex struct {
	entries  map[string]pendingEntry // by authorization key
	queue    []string                // keys, in the order they were parked
	browsers map[string][]string     // keys of each browser, oldest first (some may be gone)
	sources  map[string]int
}

type pendingEntry struct {
	browser, source string
	expires         time.Time
}

func newPendingIndex() pendingIndex {
	return pendingIndex{entries: map[string]pendingEntry{}, browsers: map[string][]string{}, sources: map[string]int{}}
}

// expire forgets the entries whose TTL has ended.
func (p *pendingIndex) expire(now time.Time) {
	for len(p.queue) > 0 {
		k := p.queue[0]
		if e, ok := p.entries[k]; ok && now.Before(e.expires) {
			return
		}
		p.queue[0] = ""
		p.queue = p.queue[1:]
		p.forget(k)
	}
	p.queue = nil // let the array go once drained
}

func (p *pendingIndex) forget(k string) {
	e, ok := p.entries[k]
	if !ok {
		return
	}
	delete(p.entries, k)
	if p.sources[e.source]--; p.sources[e.source] <= 0 {
		delete(p.sources, e.source)
	}
	if len(p.browsers[e.browser]) > 0 && p.browsers[e.browser][0] == k {
		p.trimBrowser(e.browser)
	}
}

// trimBrowser drops the browser's leading keys that are no longer counted.
func (p *pendingIndex) trimBrowser(b string) {
	ks := p.browsers[b]
	for len(ks) > 0 {
		if _, ok := p.entries[ks[0]]; ok {
			break
		}
		ks = ks[1:]
	}
	if len(ks) == 0 {
		delete(p.browsers, b)
		return
	}
	p.browsers[b] = ks
}

// browserCount is how many of b's authorizations are counted.
func (p *pendingIndex) browserCount(b string) int {
	n := 0
	for _, k := range p.browsers[b] {
		if _, ok := p.entries[k]; ok {
			n++
		}
	}
	return n
}

// PutAuthorization parks a, within caps (see store.Store).
func (s *Store) PutAuthorization(_ context.Context, key string, a *store.Authorization, ttl time.Duration, caps store.PendingCaps) (int, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("memstore: put authorization: ttl %v is not positive", ttl)
	}
	b, err := store.EncodeAuthorization(a)
	if err != nil {
		return 0, fmt.Errorf("memstore: put authorization: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, again := s.authz[key]; !again {
		if err := s.roomForAuthorization(now); err != nil {
			return 0, err
		}
	}
	p := &s.pending
	p.expire(now)
	evicted := 0
	if _, again := p.entries[key]; !again && caps != (store.PendingCaps{}) {
		switch {
		case caps.Total > 0 && len(p.entries) >= caps.Total:
			return 0, &store.PendingCapError{Which: "total", Cap: caps.Total}
		case caps.PerSource > 0 && p.sources[a.Source] >= caps.PerSource:
			return 0, &store.PendingCapError{Which: "source", Cap: caps.PerSource}
		}
		if caps.PerBrowser > 0 {
			for p.browserCount(a.Browser) >= caps.PerBrowser {
				oldest := p.browsers[a.Browser][0]
				p.forget(oldest)
				p.trimBrowser(a.Browser)
				if e, ok := s.authz[oldest]; ok && e.live(now) && !store.IsMark(e.value) {
					e.value = store.EncodeMark(store.Mark{Kind: store.KindAuthorization, State: store.MarkEvicted, At: now}, nil)
					s.authz[oldest] = e
					evicted++
				}
			}
		}
		p.entries[key] = pendingEntry{browser: a.Browser, source: a.Source, expires: now.Add(ttl)}
		p.queue = append(p.queue, key)
		p.browsers[a.Browser] = append(p.browsers[a.Browser], key)
		p.sources[a.Source]++
	}
	s.authz[key] = entry{value: b, expires: now.Add(ttl)}
	s.schedule(queuedAuthz, key, now.Add(ttl))
	return evicted, nil
}

// ---- rate limits ----

// limiters holds a token bucket per key (golang.org/x/time/rate). A bucket that has refilled
// limits nothing, so the sweep forgets it: the map holds only the keys limited lately.
type limiters struct {
	mu sync.Mutex
	m  map[string]*limiter
}

type limiter struct {
	lim   *rate.Limiter
	limit store.Limit
}

// Limit spends cost events of key's allowance under l (see store.Limiter).
func (s *Store) Limit(_ context.Context, key string, l store.Limit, cost int) (store.LimitResult, error) {
	if l.Off() {
		return store.LimitResult{Allowed: true}, nil
	}
	now := time.Now()
	s.limits.mu.Lock()
	defer s.limits.mu.Unlock()
	if s.limits.m == nil {
		s.limits.m = map[string]*limiter{}
	}
	lt, ok := s.limits.m[key]
	if !ok || lt.limit != l {
		lt = &limiter{lim: rate.NewLimiter(rate.Every(l.Interval()), l.Burst), limit: l}
		s.limits.m[key] = lt
	}
	if cost <= 0 {
		tokens := lt.lim.TokensAt(now)
		if tokens >= 1 {
			return store.LimitResult{Allowed: true}, nil
		}
		return store.LimitResult{RetryAfter: time.Duration((1 - tokens) * float64(l.Interval()))}, nil
	}
	r := lt.lim.ReserveN(now, cost)
	if !r.OK() {
		// More than the burst at once: never allowed; as soon as the bucket is full again is
		// the best a client can do.
		return store.LimitResult{RetryAfter: l.Period}, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return store.LimitResult{RetryAfter: d}, nil
	}
	return store.LimitResult{Allowed: true, Remaining: max(0, int(lt.lim.TokensAt(now)))}, nil
}

// sweepLimits forgets the buckets that have refilled.
func (s *Store) sweepLimits(now time.Time) {
	s.limits.mu.Lock()
	defer s.limits.mu.Unlock()
	for k, lt := range s.limits.m {
		if lt.lim.TokensAt(now) >= float64(lt.limit.Burst) {
			delete(s.limits.m, k)
		}
	}
}
