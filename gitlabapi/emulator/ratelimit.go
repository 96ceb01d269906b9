package emulator

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Failed sign-ins at the form are limited per client address, as GitLab's Rack::Attack limits
// them: a password can be guessed only so fast, whoever reaches an emulator that `ssobridge dev`
// may have opened beyond the machine. A successful sign-in costs nothing.
const (
	// signInBurst failed attempts may follow one another at once; then one more every
	// signInEvery.
	signInBurst = 10
	signInEvery = 6 * time.Second
	// maxSignInLimiters bounds the addresses remembered: an address idle long enough to have its
	// full burst back carries no state and is forgotten first.
	maxSignInLimiters = 10000
	// sweepSignInEvery is how often the idle addresses are forgotten.
	sweepSignInEvery = time.Minute
)

// signInLimiter holds a token bucket per client address (an IPv6 client's /64, which one host
// commonly holds whole), in memory.
type signInLimiter struct {
	every time.Duration
	burst int
	max   int

	mu        sync.Mutex
	clients   map[string]*clientLimiter
	lastSweep time.Time
}

type clientLimiter struct {
	lim  *rate.Limiter
	used time.Time // the last attempt
}

func newSignInLimiter(every time.Duration, burst, max int) *signInLimiter {
	return &signInLimiter{every: every, burst: burst, max: max, clients: map[string]*clientLimiter{}}
}

// attempt takes one failed attempt's token from the client's bucket at now. When there is none,
// it returns how long until there is, and nothing is taken; otherwise refund gives the token back
// (the password was right).
func (l *signInLimiter) attempt(client string, now time.Time) (wait time.Duration, refund func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[client]
	if c == nil {
		l.makeRoom(now)
		c = &clientLimiter{lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.clients[client] = c
	} else if now.Sub(l.lastSweep) >= sweepSignInEvery {
		l.sweep(now)
	}
	c.used = now
	r := c.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, nil
	}
	return 0, func() { r.CancelAt(now) }
}

// makeRoom forgets idle clients, and, with every one still active, the one that has waited
// longest since its last attempt, so that memory stays bounded whatever the number of addresses.
func (l *signInLimiter) makeRoom(now time.Time) {
	if len(l.clients) < l.max && now.Sub(l.lastSweep) < sweepSignInEvery {
		return
	}
	l.sweep(now)
	for len(l.clients) >= l.max {
		var oldest string
		for k, c := range l.clients {
			if oldest == "" || c.used.Before(l.clients[oldest].used) {
				oldest = k
			}
		}
		delete(l.clients, oldest)
	}
}

// sweep forgets the clients whose bucket is full again: they are as if never seen.
func (l *signInLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, c := range l.clients {
		if c.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

// clientKey is the address a request's limit is kept under: the peer's IP (the emulator believes
// no X-Forwarded-For), an IPv6 one by its /64.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// retryAfter is d in whole seconds, rounded up, as Retry-After takes it.
func retryAfter(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
