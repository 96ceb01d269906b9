// Package memstore is the in-memory store.Store, for dev mode and for a bridge that runs as a
// single instance: everything is lost on restart, and two instances do not share anything.
//
// It must behave like redisstore in every way the bridge can observe (the storetest suite runs
// against both), and it must never hold a raw code, access token, refresh token or client secret:
// tokens are kept under their store.TokenKey in records with the raw values removed. Records are
// kept encoded, in the forms package store defines, so that nothing a caller does to a value it
// passed in or got back reaches the store, and so that it stores exactly what redisstore stores.
// A sign-in is kept as redisstore keeps it, a family of fields that live and die together (see
// family), and every take happens under the store's one lock, which is what makes it atomic; a
// take is never sent twice, as nothing stands between the caller and the map.
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

var _ store.Store = (*Store)(nil)

// DefaultSweepEvery bounds how long an expired record can stay in memory. Reads check expiry
// themselves, so sweeping only matters for memory, not for correctness.
const DefaultSweepEvery = 10 * time.Second

// Options configure a store made by NewWith.
type Options struct {
	// MaxSignIns caps the sign-ins kept, live or revoked (a revoked one keeps its marks a while):
	// a write that would make one more fails with store.ErrFull, and nothing is written. 0: no
	// cap. Each takes a few kilobytes (its session holds the user the provider returned). The
	// authorizations parked (sign-ins started in the last minutes, completed or not) are capped
	// at the same number, the same way.
	MaxSignIns int
	// Setting names what sets MaxSignIns, for the log line that says the cap was reached.
	Setting string
	// Logger logs that line (nil: slog.Default()).
	Logger *slog.Logger
	// SweepEvery is how often expired records are forgotten (0: DefaultSweepEvery).
	SweepEvery time.Duration
}

// entry is one encoded record and when it stops existing; a zero expires never does.
type entry struct {
	value   []byte
	expires time.Time
}

func (e entry) live(now time.Time) bool {
	return e.expires.IsZero() || now.Before(e.expires)
}

// Store is an in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	mu    sync.Mutex
	apps  map[string][]byte
	authz map[string]entry
	// pending counts the authorizations parked, for store.PendingCaps (see limits.go).
	pending pendingIndex
	limits  limiters
	// families holds the sign-ins by session id (see family).
	families map[string]*family
	// consents holds each application's consents by GitLab user id.
	consents map[string]map[int64][]byte
	// keySet is nil while none is stored; SwapKeySet never stores an empty one.
	keySet []byte
	// marker is nil while none is stored, like keySet.
	marker []byte
	traces map[string]*trace
	// traceCount counts the traces of each share, attributed (0) and unattributed (1), dead ones
	// included until they are dropped.
	traceCount [2]int
	// folds holds each share's folds by key (see store.TraceAppend.Fold), dropped once past.
	folds [2]map[string]fold
	// locks holds each lock taken: its holder's token, and when it lapses.
	locks   map[string]heldLock
	lockSeq uint64
	// identities are made on first use (see ids); idsVersion counts their changes.
	identities *identities
	idsVersion uint64
	// onIdentities saves the identities (see OnIdentitiesChange), under saveMu, which also
	// guards savedVersion, the idsVersion it last saved.
	saveMu       sync.Mutex
	onIdentities func() error
	savedVersion uint64

	// queue holds the expiries of sign-ins, authorizations and traces (see sweep.go).
	queue expiryQueue
	opts  Options
	// fullLogged is set once the cap's log line is written, and cleared when the sign-ins are
	// well below the cap again, so that the line comes once each time the store fills.
	fullLogged bool
	// authzFullLogged is fullLogged for the authorizations, which the same cap bounds.
	authzFullLogged bool

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns an empty store without cap and starts the goroutine that drops expired records;
// Close stops it.
func New() *Store { return NewWith(Options{}) }

// NewWith is New with options.
func NewWith(opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = DefaultSweepEvery
	}
	s := &Store{
		opts:     opts,
		apps:     make(map[string][]byte),
		authz:    make(map[string]entry),
		pending:  newPendingIndex(),
		families: make(map[string]*family),
		consents: make(map[string]map[int64][]byte),
		traces:   make(map[string]*trace),
		folds:    [2]map[string]fold{make(map[string]fold), make(map[string]fold)},
		locks:    make(map[string]heldLock),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.sweepEvery(opts.SweepEvery)
	return s
}

func (s *Store) sweepEvery(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

// Close stops the sweeper. The store keeps answering afterwards, so that a request still in
// flight during shutdown does not fail for no reason.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Ping always succeeds: memory does not go away.
// Ping is store.ErrFull while the store is at its cap of sign-ins or of authorizations (after
// forgetting what is due),
// so that readiness says so; nothing else keeps it from answering.
func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	return cmp.Or(s.room(now), s.roomForAuthorization(now))
}

// ---- applications ----

func (s *Store) CreateApp(_ context.Context, app *store.Application) error {
	b, err := json.Marshal(app)
	if err != nil {
		return fmt.Errorf("memstore: create app: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[app.ID]; ok {
		return store.ErrExists
	}
	s.apps[app.ID] = b
	return nil
}

func (s *Store) GetApp(_ context.Context, id string) (*store.Application, error) {
	s.mu.Lock()
	b, ok := s.apps[id]
	s.mu.Unlock()
	if !ok {
		return nil, store.ErrNotFound
	}
	return decode[store.Application]("get app", b)
}

func (s *Store) ListApps(context.Context) ([]*store.Application, error) {
	s.mu.Lock()
	raw := make([][]byte, 0, len(s.apps))
	for _, b := range s.apps {
		raw = append(raw, b)
	}
	s.mu.Unlock()

	apps := make([]*store.Application, 0, len(raw))
	for _, b := range raw {
		a, err := decode[store.Application]("list apps", b)
		if err != nil {
			return nil, err
		}
		apps = append(apps, a)
	}
	store.SortApps(apps)
	return apps, nil
}

func (s *Store) UpdateApp(_ context.Context, app *store.Application) error {
	b, err := json.Marshal(app)
	if err != nil {
		return fmt.Errorf("memstore: update app: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[app.ID]; !ok {
		return store.ErrNotFound
	}
	s.apps[app.ID] = b
	return nil
}

func (s *Store) DeleteApp(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[id]; !ok {
		return store.ErrNotFound
	}
	delete(s.apps, id)
	return nil
}

// ---- authorizations ----

// TakeAuthorization replaces the record with its mark, which keeps it until its TTL ends, as
// redisstore does, and stops counting it against store.PendingCaps.
func (s *Store) TakeAuthorization(_ context.Context, key, attempt string) (*store.Authorization, error) {
	now := time.Now()
	s.mu.Lock()
	e, ok := s.authz[key]
	if !ok || !e.live(now) {
		s.mu.Unlock()
		return nil, store.ErrNotFound
	}
	rec := e.value
	if !store.IsMark(rec) {
		e.value = store.EncodeMark(store.Mark{Kind: store.KindAuthorization, State: store.MarkTaken, Attempt: attempt, At: now}, rec)
		s.authz[key] = e
		s.pending.forget(key)
		s.mu.Unlock()
		return decodeAuthorization(rec)
	}
	s.mu.Unlock()
	m, held, err := store.DecodeMark(rec)
	if err != nil {
		return nil, fmt.Errorf("memstore: take authorization: %w", err)
	}
	if m.State == store.MarkEvicted {
		return nil, store.ErrEvicted
	}
	if m.Attempt == attempt {
		return decodeAuthorization(held)
	}
	taken := &store.TakenError{At: m.At}
	if a, err := store.DecodeAuthorization(held); err == nil {
		taken.TraceID = a.TraceID
	}
	return nil, taken
}

func (s *Store) PeekAuthorization(_ context.Context, key string) (*store.Authorization, time.Time, error) {
	s.mu.Lock()
	e, ok := s.authz[key]
	s.mu.Unlock()
	if !ok || !e.live(time.Now()) {
		return nil, time.Time{}, store.ErrNotFound
	}
	return store.PeekedAuthorization(e.value)
}

func decodeAuthorization(b []byte) (*store.Authorization, error) {
	a, err := store.DecodeAuthorization(b)
	if err != nil {
		return nil, fmt.Errorf("memstore: take authorization: %w", err)
	}
	return a, nil
}

// ---- sign-ins ----

// family is one sign-in: its session (nil once revoked), the id of its trace, and its codes,
// tokens and marks, each under a field named as redisstore names the fields of its hash: "c:" and
// the code's TokenKey for a code, "a:" and "r:" for the pair of an access and a refresh token,
// "u:" for the mark of a taken code or refresh token. The family expires as a whole.
type family struct {
	session  []byte
	clientID string
	traceID  string
	fields   map[string][]byte
	expires  time.Time
}

func (f *family) live(now time.Time) bool { return now.Before(f.expires) }

// revoke deletes the session and every code and token, keeping the marks (and the trace id);
// Store.revoke, its one caller, has them expire within store.RevokedKept.
func (f *family) revoke() {
	f.session = nil
	for k := range f.fields {
		if !strings.HasPrefix(k, "u:") {
			delete(f.fields, k)
		}
	}
}

// pruneRefreshMarks keeps the keep newest marks of rotated refresh tokens (store.RefreshMarksKept),
// the one in field own always among them, and deletes the others.
func (f *family) pruneRefreshMarks(own string, keep int) {
	type issued struct {
		at    time.Time
		field string
	}
	var marks []issued
	for k, v := range f.fields {
		if !strings.HasPrefix(k, "u:") || k == own {
			continue
		}
		if m, _, err := store.DecodeMark(v); err == nil && m.Kind == store.KindRefresh && m.State == store.MarkIssued {
			marks = append(marks, issued{m.At, k})
		}
	}
	if len(marks) < keep {
		return
	}
	slices.SortFunc(marks, func(a, b issued) int { return a.at.Compare(b.at) })
	for _, m := range marks[:len(marks)-keep+1] {
		delete(f.fields, m.field)
	}
}

// familyOf returns the live family of a session id; the caller holds s.mu.
func (s *Store) familyOf(id string, now time.Time) *family {
	f := s.families[id]
	if f == nil || !f.live(now) {
		return nil
	}
	return f
}

// putSession writes a session into its family, creating it; the caller holds s.mu.
func (s *Store) putSession(sess *store.Session, b []byte, ttl time.Duration, now time.Time) (*family, error) {
	f := s.familyOf(sess.ID, now)
	switch {
	case f == nil:
		if _, expired := s.families[sess.ID]; !expired {
			if err := s.room(now); err != nil {
				return nil, err
			}
		}
		f = &family{fields: make(map[string][]byte)}
		s.families[sess.ID] = f
		s.schedule(queuedFamily, sess.ID, now.Add(ttl))
	case f.session == nil:
		return nil, store.ErrRevoked
	}
	f.session, f.clientID, f.traceID = b, sess.ClientID, sess.TraceID
	s.expireAt(f, sess.ID, now.Add(ttl))
	return f, nil
}

func (s *Store) PutSession(_ context.Context, sess *store.Session, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memstore: put session: ttl %v is not positive", ttl)
	}
	b, err := store.EncodeSession(sess)
	if err != nil {
		return fmt.Errorf("memstore: put session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.putSession(sess, b, ttl, time.Now())
	return err
}

func (s *Store) GetSession(_ context.Context, id string) (*store.Session, error) {
	s.mu.Lock()
	f := s.familyOf(id, time.Now())
	var b []byte
	if f != nil {
		b = f.session
	}
	s.mu.Unlock()
	if b == nil {
		return nil, store.ErrNotFound
	}
	return decodeSession(b)
}

func decodeSession(b []byte) (*store.Session, error) {
	sess, err := store.DecodeSession(b)
	if err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	return sess, nil
}

func (s *Store) UpdateSession(_ context.Context, sess *store.Session) error {
	b, err := store.EncodeSession(sess)
	if err != nil {
		return fmt.Errorf("memstore: update session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.familyOf(sess.ID, time.Now())
	if f == nil || f.session == nil {
		return store.ErrNotFound
	}
	f.session, f.clientID = b, sess.ClientID
	return nil
}

func (s *Store) RevokeSession(_ context.Context, id string) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.familyOf(id, now)
	if f == nil || f.session == nil {
		return store.ErrNotFound
	}
	s.revoke(f, id, now)
	return nil
}

// ListSessions decodes every live session to find the client's, rather than keep an index by
// client: it serves rare administrative calls, and a scan cannot disagree with the records.
func (s *Store) ListSessions(_ context.Context, clientID string) ([]*store.Session, error) {
	now := time.Now()
	s.mu.Lock()
	var raw [][]byte
	for _, f := range s.families {
		if f.live(now) && f.session != nil && f.clientID == clientID {
			raw = append(raw, f.session)
		}
	}
	s.mu.Unlock()
	sessions := make([]*store.Session, 0, len(raw))
	for _, b := range raw {
		sess, err := decodeSession(b)
		if err != nil {
			return nil, err
		}
		sessions = append(sessions, sess)
	}
	return sessions, nil
}

func (s *Store) IssueCode(_ context.Context, sess *store.Session, ttl time.Duration, key string, c *store.Code) error {
	if ttl <= 0 {
		return fmt.Errorf("memstore: issue code: ttl %v is not positive", ttl)
	}
	sb, err := store.EncodeSession(sess)
	if err != nil {
		return fmt.Errorf("memstore: issue code: %w", err)
	}
	cb, err := store.EncodeCode(c)
	if err != nil {
		return fmt.Errorf("memstore: issue code: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.putSession(sess, sb, ttl, time.Now())
	if err != nil {
		return err
	}
	f.fields["c:"+key] = cb
	return nil
}

// found reads a field of a family for a lookup; the caller holds s.mu. The field is nil when the
// family has none of that name.
func (s *Store) found(ref store.Ref, field string, now time.Time) (f *family, value []byte, err error) {
	if ref.SessionID == "" {
		return nil, nil, store.ErrNotFound // only a Redis store can hold values of format version 1
	}
	f = s.familyOf(ref.SessionID, now)
	if f == nil {
		return nil, nil, store.ErrNotFound
	}
	return f, f.fields[field+ref.Key], nil
}

// lookup decodes what found read.
func lookup(f *family, value []byte, code bool) (*store.Found, error) {
	out := &store.Found{TraceID: f.traceID}
	var err error
	if f.session != nil {
		if out.Session, err = decodeSession(f.session); err != nil {
			return nil, err
		}
	}
	switch {
	case value == nil:
	case code:
		out.Code, err = store.DecodeCode(value)
	default:
		out.Pair, err = store.DecodePair(value)
	}
	if err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	return out, nil
}

func (s *Store) PeekCode(_ context.Context, ref store.Ref) (*store.Found, error) {
	s.mu.Lock()
	f, v, err := s.found(ref, "c:", time.Now())
	if err == nil && v == nil && f.fields["u:"+ref.Key] == nil {
		err = store.ErrNotFound
	}
	var fc family
	if err == nil {
		fc = *f
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return lookup(&fc, v, true)
}

func (s *Store) GetAccess(_ context.Context, ref store.Ref) (*store.Found, error) {
	return s.get(ref, "a:")
}

func (s *Store) GetRefresh(_ context.Context, ref store.Ref) (*store.Found, error) {
	return s.get(ref, "r:")
}

// get reads a token pair by one of its halves: ErrNotFound when the field is not there.
func (s *Store) get(ref store.Ref, field string) (*store.Found, error) {
	s.mu.Lock()
	f, v, err := s.found(ref, field, time.Now())
	if err == nil && v == nil && f.session != nil {
		err = store.ErrNotFound
	}
	var fc family
	if err == nil {
		fc = *f
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return lookup(&fc, v, false)
}

func (s *Store) RevokeAccess(_ context.Context, ref store.Ref) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, _, err := s.found(ref, "a:", time.Now()); err == nil {
		delete(f.fields, "a:"+ref.Key)
	}
	return nil
}

func (s *Store) TakeCode(_ context.Context, ref store.Ref, attempt string) (*store.Taken, error) {
	return s.take(ref, attempt, store.KindCode)
}

func (s *Store) TakeRefresh(_ context.Context, ref store.Ref, attempt string) (*store.Taken, error) {
	return s.take(ref, attempt, store.KindRefresh)
}

// take is TakeCode and TakeRefresh: the value's field becomes its mark, holding the record
// until the taker finishes; another attempt finds the mark, and applies the replay rule.
func (s *Store) take(ref store.Ref, attempt, kind string) (*store.Taken, error) {
	now := time.Now()
	field := "c:"
	if kind == store.KindRefresh {
		field = "r:"
	}
	s.mu.Lock()
	f, rec, err := s.found(ref, field, now)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	mark := "u:" + ref.Key
	if rec != nil {
		delete(f.fields, field+ref.Key)
		if kind == store.KindRefresh {
			if p, err := store.DecodePair(rec); err == nil {
				delete(f.fields, "a:"+p.AccessKey)
			}
		}
		f.fields[mark] = store.EncodeMark(store.Mark{Kind: kind, State: store.MarkTaken, Attempt: attempt, At: now}, rec)
		fc := *f
		s.mu.Unlock()
		return taken(&fc, rec, kind)
	}
	mb := f.fields[mark]
	if mb == nil {
		revoked := f.session == nil
		s.mu.Unlock()
		if revoked {
			return nil, store.ErrRevoked
		}
		return nil, store.ErrNotFound
	}
	m, held, err := store.DecodeMark(mb)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("memstore: take: %w", err)
	}
	if m.Attempt == attempt && m.State == store.MarkTaken {
		fc := *f
		s.mu.Unlock()
		return taken(&fc, held, kind)
	}
	used := &store.UsedError{Mark: m, SessionID: ref.SessionID, TraceID: f.traceID}
	switch m.State {
	case store.MarkTaken:
		if !m.Replayed {
			m.Replayed = true
			f.fields[mark] = store.EncodeMark(m, held)
		}
		used.Mark = m
	case store.MarkIssued:
		used.Revoked = f.session != nil
		s.revoke(f, ref.SessionID, now)
	}
	s.mu.Unlock()
	return nil, used
}

func taken(f *family, rec []byte, kind string) (*store.Taken, error) {
	got, err := lookup(f, rec, kind == store.KindCode)
	if err != nil {
		return nil, err
	}
	return &store.Taken{Code: got.Code, Pair: got.Pair, Session: got.Session, TraceID: got.TraceID}, nil
}

func (s *Store) FinishCode(_ context.Context, ref store.Ref, attempt string, p *store.TokenPair) (*store.Session, error) {
	return s.finish(ref, attempt, nil, p, 0)
}

func (s *Store) FinishRefresh(_ context.Context, ref store.Ref, attempt string, sess *store.Session, next *store.TokenPair, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memstore: finish refresh: ttl %v is not positive", ttl)
	}
	_, err := s.finish(ref, attempt, sess, next, ttl)
	return err
}

// finish stores the pair issued for the value attempt took, and with sess (non-nil: a refresh)
// gives the family its new expiry, leaving its session as it is.
func (s *Store) finish(ref store.Ref, attempt string, sess *store.Session, p *store.TokenPair, ttl time.Duration) (*store.Session, error) {
	pb, err := store.EncodePair(p)
	if err != nil {
		return nil, fmt.Errorf("memstore: finish: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	f, mb, err := s.found(ref, "u:", now)
	if err == nil && mb == nil {
		err = store.ErrRevoked // no take to finish: the sign-in was revoked and forgotten
		if f != nil && f.session != nil {
			err = store.ErrLost // a live sign-in without the take
		}
	}
	if err != nil {
		s.mu.Unlock()
		if errors.Is(err, store.ErrNotFound) {
			// The take found the sign-in moments ago, and a revoked one keeps its marks far
			// longer than any request lasts: it is gone because the store lost it.
			err = store.ErrLost
		}
		return nil, err
	}
	m, _, err := store.DecodeMark(mb)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("memstore: finish: %w", err)
	}
	switch {
	case m.Attempt == attempt && m.State == store.MarkRevoked: // this finish, made before
		s.mu.Unlock()
		return nil, store.ErrReplayed
	case m.Attempt != attempt, m.State == store.MarkRefused, m.State == store.MarkRevoked:
		s.mu.Unlock()
		return nil, store.ErrRevoked
	case m.State == store.MarkIssued: // this finish, made before
	case f.session == nil:
		s.mu.Unlock()
		return nil, store.ErrRevoked
	case m.Replayed:
		m.State = store.MarkRevoked
		f.fields["u:"+ref.Key] = store.EncodeMark(m, nil)
		s.revoke(f, ref.SessionID, now)
		s.mu.Unlock()
		return nil, store.ErrReplayed
	default:
		f.fields["a:"+p.AccessKey] = pb
		if p.RefreshKey != "" {
			f.fields["r:"+p.RefreshKey] = pb
		}
		m.State = store.MarkIssued
		f.fields["u:"+ref.Key] = store.EncodeMark(m, nil)
		if sess != nil || p.RefreshKey == "" {
			s.expireAt(f, ref.SessionID, now.Add(store.SignInExpiry(p, ttl, now)))
		}
		if sess != nil {
			f.pruneRefreshMarks("u:"+ref.Key, store.RefreshMarksKept)
		}
	}
	if f.session == nil {
		s.mu.Unlock()
		return nil, store.ErrRevoked
	}
	b := f.session
	s.mu.Unlock()
	return decodeSession(b)
}

// RedeemCode leaves every code to TakeCode and FinishCode: in memory, one step would save no
// round trip.
func (s *Store) RedeemCode(context.Context, store.Ref, string, store.CodeRedemption, *store.TokenPair) (*store.Redeemed, error) {
	return nil, store.ErrSlowPath
}

func (s *Store) RefuseCode(_ context.Context, ref store.Ref, attempt, refusal, traceID string) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	f, mb, err := s.found(ref, "u:", now)
	if err != nil || mb == nil {
		return nil // nothing left to refuse: the sign-in is gone
	}
	m, _, err := store.DecodeMark(mb)
	if err != nil {
		return fmt.Errorf("memstore: refuse code: %w", err)
	}
	if m.Attempt != attempt || m.State != store.MarkTaken {
		return nil
	}
	m.State, m.Refusal, m.RefusalTrace = store.MarkRefused, refusal, traceID
	f.fields["u:"+ref.Key] = store.EncodeMark(m, nil)
	s.revoke(f, ref.SessionID, now)
	return nil
}

// ---- locks ----

type heldLock struct {
	token   uint64
	expires time.Time
}

// Lock polls as redisstore's does, so that the two behave alike; a lock lapses after ttl.
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("memstore: lock: ttl %v is not positive", ttl)
	}
	var token uint64
	err := store.WaitLock(ctx, func() (bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		now := time.Now()
		if h, ok := s.locks[key]; ok && now.Before(h.expires) {
			return false, nil
		}
		s.lockSeq++
		token = s.lockSeq
		s.locks[key] = heldLock{token: token, expires: now.Add(ttl)}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.locks[key].token == token {
			delete(s.locks, key)
		}
	}, nil
}

// ---- consents ----

func (s *Store) PutConsent(_ context.Context, clientID string, userID int64, scopes []string) error {
	if userID <= 0 {
		return fmt.Errorf("memstore: put consent: user id %d is not positive", userID)
	}
	b, err := store.EncodeConsent(scopes)
	if err != nil {
		return fmt.Errorf("memstore: put consent: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byUser := s.consents[clientID]
	if byUser == nil {
		byUser = make(map[int64][]byte)
		s.consents[clientID] = byUser
	}
	byUser[userID] = b
	return nil
}

func (s *Store) GetConsent(_ context.Context, clientID string, userID int64) ([]string, error) {
	s.mu.Lock()
	b, ok := s.consents[clientID][userID]
	s.mu.Unlock()
	if !ok {
		return nil, store.ErrNotFound
	}
	scopes, err := store.DecodeConsent(b)
	if err != nil {
		return nil, fmt.Errorf("memstore: get consent: %w", err)
	}
	return scopes, nil
}

func (s *Store) ListConsents(_ context.Context, clientID string) (map[int64][]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64][]string, len(s.consents[clientID]))
	for userID, b := range s.consents[clientID] {
		scopes, err := store.DecodeConsent(b)
		if err != nil {
			return nil, fmt.Errorf("memstore: list consents: %w", err)
		}
		out[userID] = scopes
	}
	return out, nil
}

func (s *Store) DeleteConsents(_ context.Context, clientID string, userID int64) error {
	if userID < 0 {
		return fmt.Errorf("memstore: delete consents: user id %d is negative", userID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if userID == 0 {
		delete(s.consents, clientID)
		return nil
	}
	byUser := s.consents[clientID]
	delete(byUser, userID)
	if len(byUser) == 0 {
		delete(s.consents, clientID)
	}
	return nil
}

// ---- OpenID Connect keys ----

func (s *Store) GetKeySet(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keySet == nil {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(s.keySet), nil
}

// SwapKeySet treats an empty old like nil: no stored key set is ever empty.
func (s *Store) SwapKeySet(_ context.Context, old, next []byte) (bool, error) {
	return s.swapValue("key set", &s.keySet, old, next)
}

func (s *Store) GetMarker(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.marker == nil {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(s.marker), nil
}

// SwapMarker treats an empty old like nil: no stored marker is ever empty.
func (s *Store) SwapMarker(_ context.Context, old, next []byte) (bool, error) {
	return s.swapValue("marker", &s.marker, old, next)
}

// swapValue sets *v to next only if it is still old (nil or empty: while none is stored).
func (s *Store) swapValue(what string, v *[]byte, old, next []byte) (bool, error) {
	if len(next) == 0 {
		return false, fmt.Errorf("memstore: swap %s: the new %s is empty", what, what)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(old) == 0 {
		if *v != nil {
			return false, nil
		}
	} else if !bytes.Equal(*v, old) {
		return false, nil
	}
	*v = bytes.Clone(next)
	return true, nil
}

// DumpRaw returns every key and record the store holds, for tests that check what is kept.
func (s *Store) DumpRaw(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf bytes.Buffer
	for id, b := range s.apps {
		buf.WriteString(id)
		buf.WriteByte('\n')
		buf.Write(b)
		buf.WriteByte('\n')
	}
	for k, e := range s.authz {
		buf.WriteString("authz:" + k + "\n")
		buf.Write(e.value)
		buf.WriteByte('\n')
	}
	for id, f := range s.families {
		fmt.Fprintf(&buf, "signin:%s\ntrace %s\n", id, f.traceID)
		if f.session != nil {
			buf.Write(f.session)
			buf.WriteByte('\n')
		}
		for k, v := range f.fields {
			buf.WriteString(k + "\n")
			buf.Write(v)
			buf.WriteByte('\n')
		}
	}
	for clientID, byUser := range s.consents {
		for userID, b := range byUser {
			fmt.Fprintf(&buf, "consent:%s:%d\n", clientID, userID)
			buf.Write(b)
			buf.WriteByte('\n')
		}
	}
	if s.keySet != nil {
		buf.WriteString("oidc:keyset\n")
		buf.Write(s.keySet)
		buf.WriteByte('\n')
	}
	if s.marker != nil {
		buf.WriteString("marker\n")
		buf.Write(s.marker)
		buf.WriteByte('\n')
	}
	for id, tr := range s.traces {
		meta, err := json.Marshal(tr.meta)
		if err != nil {
			return nil, fmt.Errorf("memstore: dump: %w", err)
		}
		fmt.Fprintf(&buf, "trace:%s\n%s %s\n", id, tr.startedAt.Format(time.RFC3339Nano), meta)
		for _, step := range tr.steps {
			buf.Write(step)
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), nil
}

// ---- traces ----

// maxTraceSteps bounds a trace, which a client that loops on the bridge (or an attacker replaying
// one sign-in's requests) would otherwise grow without end. The steps past it are dropped, not the
// first ones: how a sign-in began is what explains it.
const maxTraceSteps = 100

// defaultTraceLimit is how many traces ListTraces returns when not told.
const defaultTraceLimit = 100

// trace is a stored trace. Its steps are kept encoded, as redisstore keeps them, so that a caller
// holding a step's Detail map cannot change the store through it.
type trace struct {
	startedAt time.Time
	meta      store.TraceMeta
	steps     [][]byte
	expires   time.Time
	// share is 1 for an unattributed trace (see store.TraceAppend), 0 for the others.
	share int
	// folded is set on the first trace of a fold (see store.TraceAppend.Fold), with the traces
	// folded into it; such a trace is never folded into another.
	folded *store.TraceFold
}

// fold is the first trace of failures alike (see store.TraceAppend.Fold), until when later ones
// fold into it.
type fold struct {
	first string
	until time.Time
}

func (tr *trace) live(now time.Time) bool { return now.Before(tr.expires) }

// traceOrder orders traces oldest first as redisstore's index does: by StartedAt to the
// millisecond (its score), then by id (Redis's order among equal scores), so that both backends
// list, and evict, the same traces.
func traceOrder(aID string, a *trace, bID string, b *trace) int {
	if c := a.startedAt.UnixMilli() - b.startedAt.UnixMilli(); c != 0 {
		if c < 0 {
			return -1
		}
		return 1
	}
	return strings.Compare(aID, bID)
}

// AddTraceSteps keeps each trace for retention after its latest step. A trace evicted by the cap
// while its sign-in goes on starts over with the next step, as a new trace. With a cap that leaves
// unattributed traces no share, they are not kept.
func (s *Store) AddTraceSteps(_ context.Context, steps []store.TraceAppend, retention time.Duration, maxTraces int) error {
	encoded := make([][]byte, len(steps))
	for i, a := range steps {
		if err := checkTraceArgs(a.ID, retention, maxTraces); err != nil {
			return fmt.Errorf("memstore: add trace steps: %w", err)
		}
		b, err := store.Encode(a.Step)
		if err != nil {
			return fmt.Errorf("memstore: add trace steps: %w", err)
		}
		encoded[i] = b
	}
	attributed, unattributed := store.TraceCaps(maxTraces)
	caps := [2]int{attributed, unattributed}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	// folded holds the traces this batch folded: their later steps in it go with them, as
	// redisstore writes a trace's steps of one batch together.
	folded := make(map[string]bool)
	for i, a := range steps {
		if folded[a.ID] {
			continue
		}
		tr, ok := s.traces[a.ID]
		if a.Fold != "" && s.foldTrace(a, now, caps) {
			folded[a.ID] = true
			continue
		}
		if !ok || !tr.live(now) {
			share := 0
			if a.Unattributed {
				share = 1
			}
			if caps[share] == 0 {
				continue
			}
			started := a.Step.At
			if started.IsZero() {
				started = now
			}
			if ok {
				s.dropTrace(a.ID)
			}
			tr = &trace{startedAt: started, share: share}
			s.traces[a.ID] = tr
			s.traceCount[share]++
			s.schedule(queuedTrace, a.ID, now.Add(retention))
		}
		tr.meta.Merge(a.Meta)
		if len(tr.steps) < maxTraceSteps {
			tr.steps = append(tr.steps, encoded[i])
		}
		tr.expires = now.Add(retention)
		if a.Fold != "" && tr.folded == nil {
			// The first of its fold: foldTrace found none to fold it into.
			tr.folded = &store.TraceFold{}
			s.folds[tr.share][a.Fold] = fold{first: a.ID, until: now.Add(store.TraceFoldWindow)}
		}
		s.capTraces(now, tr.share, caps[tr.share])
	}
	return nil
}

// foldTrace folds trace a.ID into the first trace of a.Fold, if there is one to fold it into (see
// store.TraceAppend.Fold), and reports whether it did; the caller holds s.mu.
func (s *Store) foldTrace(a store.TraceAppend, now time.Time, caps [2]int) bool {
	share := 0
	if tr, ok := s.traces[a.ID]; ok && tr.live(now) {
		if tr.folded != nil {
			return false // the first of a fold itself
		}
		share = tr.share
	} else if a.Unattributed {
		share = 1
	}
	if caps[share] == 0 {
		return false
	}
	f, ok := s.folds[share][a.Fold]
	if !ok || !now.Before(f.until) || f.first == a.ID {
		return false
	}
	first, ok := s.traces[f.first]
	if !ok || !first.live(now) || first.folded == nil {
		return false // gone: this trace takes its place
	}
	// Milliseconds, as redisstore keeps them, so that both backends answer the same.
	first.folded.Fold(time.UnixMilli(cmp.Or(a.Step.At, now).UnixMilli()))
	s.dropTrace(a.ID)
	return true
}

// dropTrace deletes a trace; the caller holds s.mu.
func (s *Store) dropTrace(id string) {
	if tr, ok := s.traces[id]; ok {
		s.traceCount[tr.share]--
		delete(s.traces, id)
	}
}

// capTraces deletes the oldest traces of a share beyond its cap; the caller holds s.mu. Each call
// past the cap costs a pass over every trace, so a large cap is cut by one hundredth more than
// needed: the next hundredth of new traces then costs nothing. (Only a new trace takes the store
// over the cap, by one.) redisstore cuts its index the same way.
func (s *Store) capTraces(now time.Time, share, limit int) {
	if s.traceCount[share] <= limit {
		return
	}
	for id, tr := range s.traces {
		if !tr.live(now) {
			s.dropTrace(id)
		}
	}
	if s.traceCount[share] <= limit {
		return
	}
	switch excess := s.traceCount[share] - (limit - limit/100); {
	case excess == 1:
		var oldest string
		for id, tr := range s.traces {
			if tr.share == share && (oldest == "" || traceOrder(id, tr, oldest, s.traces[oldest]) < 0) {
				oldest = id
			}
		}
		s.dropTrace(oldest)
	default:
		ids := make([]string, 0, s.traceCount[share])
		for id, tr := range s.traces {
			if tr.share == share {
				ids = append(ids, id)
			}
		}
		slices.SortFunc(ids, func(a, b string) int { return traceOrder(a, s.traces[a], b, s.traces[b]) })
		for _, id := range ids[:excess] {
			s.dropTrace(id)
		}
	}
}

func (s *Store) GetTrace(_ context.Context, id string) (*store.Trace, error) {
	s.mu.Lock()
	tr, ok := s.traces[id]
	if !ok || !tr.live(time.Now()) {
		s.mu.Unlock()
		return nil, store.ErrNotFound
	}
	started, meta, steps, folded := tr.startedAt, tr.meta, slices.Clone(tr.steps), foldedOf(tr)
	s.mu.Unlock()
	return decodeTrace(id, started, meta, steps, folded)
}

// ListTraces compares StartedAt with since to the millisecond, as redisstore's index does.
func (s *Store) ListTraces(_ context.Context, since time.Time, limit int) ([]*store.Trace, error) {
	if limit <= 0 {
		limit = defaultTraceLimit
	}
	type listed struct {
		id     string
		tr     trace
		folded *store.TraceFold
	}
	now := time.Now()
	s.mu.Lock()
	found := make([]listed, 0)
	for id, tr := range s.traces {
		if tr.live(now) && (since.IsZero() || tr.startedAt.UnixMilli() >= since.UnixMilli()) {
			// The slice header is copied, and the steps it holds are never changed in place.
			found = append(found, listed{id, *tr, foldedOf(tr)})
		}
	}
	s.mu.Unlock()

	slices.SortFunc(found, func(a, b listed) int { return traceOrder(b.id, &b.tr, a.id, &a.tr) })
	found = found[:min(len(found), limit)]
	traces := make([]*store.Trace, 0, len(found))
	for _, f := range found {
		tr, err := decodeTrace(f.id, f.tr.startedAt, f.tr.meta, f.tr.steps, f.folded)
		if err != nil {
			return nil, err
		}
		traces = append(traces, tr)
	}
	return traces, nil
}

// foldedOf is a copy of the count of traces folded into tr, nil when none was; the caller holds
// s.mu.
func foldedOf(tr *trace) *store.TraceFold {
	if tr.folded == nil || tr.folded.Count == 0 {
		return nil
	}
	f := *tr.folded
	return &f
}

func decodeTrace(id string, started time.Time, meta store.TraceMeta, raw [][]byte, folded *store.TraceFold) (*store.Trace, error) {
	tr := &store.Trace{ID: id, StartedAt: started, TraceMeta: meta, Steps: make([]store.TraceStep, len(raw)), Folded: folded}
	for i, b := range raw {
		if err := store.Decode(b, &tr.Steps[i]); err != nil {
			return nil, fmt.Errorf("memstore: trace %s: %w", id, err)
		}
	}
	return tr, nil
}

func checkTraceArgs(id string, retention time.Duration, maxTraces int) error {
	switch {
	case id == "":
		return errors.New("the trace id is empty")
	case strings.Contains(id, ":"):
		// redisstore refuses it, as "<id>:steps" would name another trace's steps.
		return fmt.Errorf("the trace id %q has a colon", id)
	case retention <= 0:
		return fmt.Errorf("retention %v is not positive", retention)
	case maxTraces <= 0:
		return fmt.Errorf("max traces %d is not positive", maxTraces)
	}
	return nil
}

// ---- plumbing ----

func decode[T any](op string, b []byte) (*T, error) {
	v := new(T)
	if err := store.Decode(b, v); err != nil {
		return nil, fmt.Errorf("memstore: %s: %w", op, err)
	}
	return v, nil
}
