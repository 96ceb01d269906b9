package memstore

import (
	"cmp"
	"container/heap"
	"fmt"
	"log/slog"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// The store forgets what has expired through a queue of expiries (a heap, soonest first) rather
// than by walking its maps: each pass of the sweeper takes from the queue only what is due, a
// batch at a time under the lock, so that neither a pass nor a request waits on a walk over
// every sign-in. A record is queued when it is made, and again whenever its expiry moves
// earlier (a revocation); an expiry that moves later (a refresh, a trace's next step) is found
// when its entry comes due and the record is still live, and is queued again then. So a record
// has one or two entries, and an entry whose record is gone or live is dropped or moved on.

// Kinds of queued records.
const (
	queuedFamily = iota
	queuedAuthz
	queuedTrace
)

// expiry is one entry of the queue: the record of kind under key may expire at at.
type expiry struct {
	at   time.Time
	kind uint8
	key  string
}

type expiryQueue []expiry

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(expiry)) }
func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = expiry{}
	*q = old[:len(old)-1]
	return e
}

// sweepBatch is how many entries of the queue one hold of the lock takes at most, and
// sweepBatches how many batches one pass takes at most: a pass forgets up to 100,000 records,
// and requests wait for one batch at most (about a millisecond).
const (
	sweepBatch   = 1000
	sweepBatches = 100
)

// schedule queues the expiry of a record; the caller holds s.mu.
func (s *Store) schedule(kind uint8, key string, at time.Time) {
	heap.Push(&s.queue, expiry{at: at, kind: kind, key: key})
}

// expireAt gives family f (of session id) its expiry at; the caller holds s.mu.
func (s *Store) expireAt(f *family, id string, at time.Time) {
	if at.Before(f.expires) {
		s.schedule(queuedFamily, id, at)
	}
	f.expires = at
}

// revoke revokes family f (of session id), which then expires within store.RevokedKept; the
// caller holds s.mu.
func (s *Store) revoke(f *family, id string, now time.Time) {
	f.revoke()
	if keep := now.Add(store.RevokedKept); f.expires.After(keep) {
		s.expireAt(f, id, keep)
	}
}

// sweepDue forgets up to limit records whose expiry has come, and reports whether entries that
// are due remain; the caller holds s.mu.
func (s *Store) sweepDue(now time.Time, limit int) (more bool) {
	for range limit {
		if len(s.queue) == 0 || s.queue[0].at.After(now) {
			return false
		}
		e := heap.Pop(&s.queue).(expiry)
		switch e.kind {
		case queuedFamily:
			if f, ok := s.families[e.key]; ok {
				if !f.live(now) {
					delete(s.families, e.key)
				} else if f.expires.After(e.at) {
					s.schedule(queuedFamily, e.key, f.expires)
				}
			}
		case queuedAuthz:
			if a, ok := s.authz[e.key]; ok {
				if !a.live(now) {
					delete(s.authz, e.key)
				} else if a.expires.After(e.at) {
					s.schedule(queuedAuthz, e.key, a.expires)
				}
			}
		case queuedTrace:
			if tr, ok := s.traces[e.key]; ok {
				if !tr.live(now) {
					s.dropTrace(e.key)
				} else if tr.expires.After(e.at) {
					s.schedule(queuedTrace, e.key, tr.expires)
				}
			}
		}
	}
	return len(s.queue) > 0 && !s.queue[0].at.After(now)
}

// sweep is one pass of the sweeper: what has expired, a batch at a time, each under the lock
// alone, up to sweepBatches batches; then the locks that lapsed and the pending index.
func (s *Store) sweep(now time.Time) {
	s.sweepLimits(now)
	for range sweepBatches {
		s.mu.Lock()
		more := s.sweepDue(now, sweepBatch)
		s.mu.Unlock()
		if !more {
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compactQueue()
	s.pending.expire(now)
	// Folds are one per failure alike a minute: few.
	for _, folds := range s.folds {
		for k, f := range folds {
			if !now.Before(f.until) {
				delete(folds, k)
			}
		}
	}
	// Locks are few (one per name in use) and deleted by their holders; only a holder that died
	// leaves one to lapse.
	for k, h := range s.locks {
		if !now.Before(h.expires) {
			delete(s.locks, k)
		}
	}
	s.rearmFull()
}

// compactQueue drops the entries of records already gone once they are most of the queue: a
// trace dropped by the cap on traces or folded, or a sign-in deleted with its application, leaves
// its entry until its expiry (a trace's is a day away), which would make the queue grow with the
// day's sign-ins rather than with what is kept. It walks the queue under the lock, at most once
// per doubling; the caller holds s.mu.
func (s *Store) compactQueue() {
	kept := len(s.families) + len(s.authz) + len(s.traces)
	if len(s.queue) <= 2*kept+1024 {
		return
	}
	q := s.queue[:0]
	for _, e := range s.queue {
		var ok bool
		switch e.kind {
		case queuedFamily:
			_, ok = s.families[e.key]
		case queuedAuthz:
			_, ok = s.authz[e.key]
		case queuedTrace:
			_, ok = s.traces[e.key]
		}
		if ok {
			q = append(q, e)
		}
	}
	clear(s.queue[len(q):])
	s.queue = q
	heap.Init(&s.queue)
}

// room makes room for one more sign-in under the cap, forgetting what has expired if it must;
// store.ErrFull when there is none. The caller holds s.mu.
func (s *Store) room(now time.Time) error {
	return s.roomUnderCap(now, func() int { return len(s.families) }, &s.fullLogged,
		"the in-memory store holds %d sign-ins, its cap (%s): every new sign-in fails (store_full) until older ones expire. "+
			"Raise the cap if this host has the memory for it (a few kilobytes each), shorten the sign-ins' lives (SSOBRIDGE_REFRESH_TOKEN_TTL; "+
			"applications registered without refresh tokens end with their access token), or keep the state in Redis (SSOBRIDGE_REDIS_URL), which holds more and survives restarts",
		"max_sign_ins")
}

// roomForAuthorization makes room for one more parked authorization under the same cap as the
// sign-ins: the caps on sign-ins in progress count only those not taken yet, and a taken one
// stays its ten minutes, so without this, requests that come back to the callback (with any
// code) from many addresses would grow memory without bound. The caller holds s.mu.
func (s *Store) roomForAuthorization(now time.Time) error {
	return s.roomUnderCap(now, func() int { return len(s.authz) }, &s.authzFullLogged,
		"the in-memory store holds %d authorizations (sign-ins started in the last minutes, completed or not), its cap (%s): every new sign-in fails (store_full) until older ones expire. "+
			"Raise the cap if this host has the memory for it (about a kilobyte each), or keep the state in Redis (SSOBRIDGE_REDIS_URL)",
		"max_authorizations")
}

// roomUnderCap is room for what count counts: nil under the cap, else, once what is due is
// forgotten, store.ErrFull, and the line format (of the cap and the setting) logged once until
// rearmFull. The caller holds s.mu.
func (s *Store) roomUnderCap(now time.Time, count func() int, logged *bool, format, attr string) error {
	limit := s.opts.MaxSignIns
	if limit <= 0 || count() < limit {
		return nil
	}
	s.sweepDue(now, sweepBatch)
	if count() < limit {
		return nil
	}
	if !*logged {
		*logged = true
		s.opts.Logger.Error(fmt.Sprintf(format, limit, cmp.Or(s.opts.Setting, "memstore.Options.MaxSignIns")), attr, limit)
	}
	return store.ErrFull
}

// rearmFull lets the caps' log lines be written again once what they count is a tenth below the
// cap; the caller holds s.mu.
func (s *Store) rearmFull() {
	below := s.opts.MaxSignIns - s.opts.MaxSignIns/10
	if s.fullLogged && len(s.families) < below {
		s.fullLogged = false
	}
	if s.authzFullLogged && len(s.authz) < below {
		s.authzFullLogged = false
	}
}

// DefaultMaxSignIns is the cap a bridge gives its in-memory store unless told otherwise. A sign-in
// with its authorization takes about 13 KB of the process's memory, garbage collector's room
// included (serve at a cap of 100,000 had 1.29 GB of RSS at 98,600 sign-ins): at 25,000, serve
// levelled off at 443 MB, its traces (SSOBRIDGE_TRACE_MAX) included.
const DefaultMaxSignIns = 25_000

// CapSignIns sets Options.MaxSignIns, Setting and Logger of a store already made.
func (s *Store) CapSignIns(limit int, setting string, log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.MaxSignIns, s.opts.Setting = limit, setting
	if log != nil {
		s.opts.Logger = log
	}
	s.fullLogged, s.authzFullLogged = false, false
}
