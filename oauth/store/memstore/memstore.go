// Package memstore is the in-memory store.Store, for dev mode and for a bridge that runs as a
// single instance: everything is lost on restart, and two instances do not share anything.
//
// It must behave like redisstore in every way the bridge can observe (the storetest suite runs
// against both), and it must never hold a raw code, access token, refresh token or client secret:
// tokens are kept under their store.TokenKey in records with the raw values removed. Records are
// kept encoded, so that nothing a caller does to a value it passed in or got back reaches the
// store, and so that it stores exactly what redisstore stores.
package memstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-oauth2/oauth2/v4"

	"github.com/ssobridge/ssobridge/oauth/store"
)

var _ store.Store = (*Store)(nil)

// sweepInterval bounds how long an expired record can stay in memory. Reads check expiry
// themselves, so sweeping only matters for memory, not for correctness.
const sweepInterval = time.Minute

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
	mu       sync.Mutex
	apps     map[string][]byte
	authz    map[string]entry
	sessions map[string]entry
	codes    map[string]entry
	access   map[string]entry
	refresh  map[string]entry
	used     map[string]entry
	// consents holds each application's consents by GitLab user id.
	consents map[string]map[int64][]byte
	// keySet is nil while none is stored; SwapKeySet never stores an empty one.
	keySet []byte
	traces map[string]*trace
	// traceCount counts the traces of each share, attributed (0) and unattributed (1), dead ones
	// included until they are dropped.
	traceCount [2]int
	// locks holds each lock taken: its holder's token, and when it lapses.
	locks   map[string]heldLock
	lockSeq uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// New returns an empty store and starts the goroutine that drops expired records; Close stops it.
func New() *Store {
	s := &Store{
		apps:     make(map[string][]byte),
		authz:    make(map[string]entry),
		sessions: make(map[string]entry),
		codes:    make(map[string]entry),
		access:   make(map[string]entry),
		refresh:  make(map[string]entry),
		used:     make(map[string]entry),
		consents: make(map[string]map[int64][]byte),
		traces:   make(map[string]*trace),
		locks:    make(map[string]heldLock),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.sweepEvery(sweepInterval)
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

// expiring lists the maps whose records have a TTL; the caller holds s.mu.
func (s *Store) expiring() []map[string]entry {
	return []map[string]entry{s.authz, s.sessions, s.codes, s.access, s.refresh, s.used}
}

func (s *Store) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.expiring() {
		for k, e := range m {
			if !e.live(now) {
				delete(m, k)
			}
		}
	}
	for id, tr := range s.traces {
		if !tr.live(now) {
			s.dropTrace(id)
		}
	}
	for k, h := range s.locks {
		if !now.Before(h.expires) {
			delete(s.locks, k)
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
func (s *Store) Ping(context.Context) error { return nil }

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

func (s *Store) PutAuthorization(_ context.Context, key string, a *store.Authorization, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memstore: put authorization: ttl %v is not positive", ttl)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("memstore: put authorization: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authz[key] = entry{value: b, expires: time.Now().Add(ttl)}
	return nil
}

func (s *Store) TakeAuthorization(_ context.Context, key string) (*store.Authorization, error) {
	b, ok := s.take(s.authz, key)
	if !ok {
		return nil, store.ErrNotFound
	}
	return decode[store.Authorization]("take authorization", b)
}

// ---- sessions ----

func (s *Store) PutSession(_ context.Context, sess *store.Session, ttl time.Duration) error {
	write, err := s.sessionWrite(sess, ttl)
	if err != nil {
		return fmt.Errorf("memstore: put session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	write()
	return nil
}

// sessionWrite returns PutSession's write, which the caller runs holding s.mu.
func (s *Store) sessionWrite(sess *store.Session, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("ttl %v is not positive", ttl)
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return nil, err
	}
	return func() { s.sessions[sess.ID] = entry{value: b, expires: time.Now().Add(ttl)} }, nil
}

// RenewSession writes the session only if a live one is there.
func (s *Store) RenewSession(_ context.Context, sess *store.Session, ttl time.Duration) error {
	write, err := s.sessionWrite(sess, ttl)
	if err != nil {
		return fmt.Errorf("memstore: renew session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.sessions[sess.ID]; !ok || !e.live(time.Now()) {
		return store.ErrNotFound
	}
	write()
	return nil
}

func (s *Store) GetSession(_ context.Context, id string) (*store.Session, error) {
	b, ok := s.get(s.sessions, id)
	if !ok {
		return nil, store.ErrNotFound
	}
	return decode[store.Session]("get session", b)
}

func (s *Store) UpdateSession(_ context.Context, sess *store.Session) error {
	b, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("memstore: update session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sessions[sess.ID]
	if !ok || !e.live(time.Now()) {
		return store.ErrNotFound
	}
	e.value = b
	s.sessions[sess.ID] = e
	return nil
}

func (s *Store) DeleteSession(_ context.Context, id string) error {
	if _, ok := s.take(s.sessions, id); !ok {
		return store.ErrNotFound
	}
	return nil
}

// ListSessions decodes every live session to find the client's, rather than keep an index by
// client: it serves rare administrative calls, and a scan cannot disagree with the records.
func (s *Store) ListSessions(_ context.Context, clientID string) ([]*store.Session, error) {
	now := time.Now()
	s.mu.Lock()
	raw := make([][]byte, 0, len(s.sessions))
	for _, e := range s.sessions {
		if e.live(now) {
			raw = append(raw, e.value)
		}
	}
	s.mu.Unlock()

	sessions := make([]*store.Session, 0)
	for _, b := range raw {
		sess, err := decode[store.Session]("list sessions", b)
		if err != nil {
			return nil, err
		}
		if sess.ClientID == clientID {
			sessions = append(sessions, sess)
		}
	}
	return sessions, nil
}

// ---- used codes and refresh tokens ----

func (s *Store) MarkUsed(_ context.Context, key string, used store.Used, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memstore: mark used: ttl %v is not positive", ttl)
	}
	v, err := store.EncodeUsed(used)
	if err != nil {
		return fmt.Errorf("memstore: mark used: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[key] = entry{value: []byte(v), expires: time.Now().Add(ttl)}
	return nil
}

func (s *Store) UsedBy(_ context.Context, key string) (store.Used, error) {
	b, ok := s.get(s.used, key)
	if !ok {
		return store.Used{}, store.ErrNotFound
	}
	u, err := store.DecodeUsed(string(b))
	if err != nil {
		return store.Used{}, fmt.Errorf("memstore: used by: %w", err)
	}
	return u, nil
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

// ---- tokens (oauth2.TokenStore) ----

// Create stores a code, or an access token with its optional refresh token. A value whose
// lifetime has already run out is not stored, as if it had expired at once.
func (s *Store) Create(_ context.Context, info oauth2.TokenInfo) error {
	write, err := s.tokenWrite(info)
	if err != nil {
		return fmt.Errorf("memstore: create token: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	write()
	return nil
}

// tokenWrite returns Create's write of info, which the caller runs holding s.mu.
func (s *Store) tokenWrite(info oauth2.TokenInfo) (func(), error) {
	now := time.Now()
	rec, ttl, err := store.NewTokenRecord(info, now)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return func() {
		if code := info.GetCode(); code != "" {
			if ttl.Code > 0 {
				s.codes[store.TokenKey(code)] = entry{value: b, expires: expiresAt(now, ttl.Code)}
			}
			return
		}
		if ttl.Access > 0 {
			s.access[rec.AccessKey] = entry{value: b, expires: expiresAt(now, ttl.Access)}
		}
		if ttl.Refresh > 0 {
			s.refresh[rec.RefreshKey] = entry{value: b, expires: expiresAt(now, ttl.Refresh)}
		}
	}, nil
}

// PutSessionCode writes the session and the code under one lock.
func (s *Store) PutSessionCode(_ context.Context, sess *store.Session, ttl time.Duration, code oauth2.TokenInfo) error {
	if code.GetCode() == "" {
		return errors.New("memstore: put session and code: the token has no code")
	}
	session, err := s.sessionWrite(sess, ttl)
	if err != nil {
		return fmt.Errorf("memstore: put session and code: %w", err)
	}
	write, err := s.tokenWrite(code)
	if err != nil {
		return fmt.Errorf("memstore: put session and code: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	session()
	write()
	return nil
}

// CreateForSession writes the tokens and reads their session under one lock.
func (s *Store) CreateForSession(_ context.Context, info oauth2.TokenInfo) (*store.Session, error) {
	if info.GetCode() != "" || info.GetAccess() == "" {
		return nil, errors.New("memstore: create tokens for session: the token has no access token, or is a code")
	}
	write, err := s.tokenWrite(info)
	if err != nil {
		return nil, fmt.Errorf("memstore: create tokens for session: %w", err)
	}
	s.mu.Lock()
	write()
	e, ok := s.sessions[info.GetUserID()]
	s.mu.Unlock()
	if !ok || !e.live(time.Now()) {
		return nil, store.ErrNotFound
	}
	return decode[store.Session]("create tokens for session", e.value)
}

// PeekCode reads a code's record and leaves it in place.
func (s *Store) PeekCode(_ context.Context, code string) (oauth2.TokenInfo, error) {
	rec, err := s.getToken("peek code", s.get, s.codes, code)
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info(code, "", ""), nil
}

// GetByCode consumes the code: a second call with the same code finds nothing.
func (s *Store) GetByCode(_ context.Context, code string) (oauth2.TokenInfo, error) {
	rec, err := s.getToken("get by code", s.take, s.codes, code)
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info(code, "", ""), nil
}

// TakeCode consumes the code and marks it used under one lock.
func (s *Store) TakeCode(_ context.Context, code string, usedTTL time.Duration) (oauth2.TokenInfo, error) {
	if usedTTL <= 0 {
		return nil, fmt.Errorf("memstore: take code: used ttl %v is not positive", usedTTL)
	}
	if code == "" {
		return nil, nil
	}
	key := store.TokenKey(code)
	s.mu.Lock()
	e, ok := s.codes[key]
	delete(s.codes, key)
	var rec *store.TokenRecord
	var err error
	if ok && e.live(time.Now()) {
		rec, err = decode[store.TokenRecord]("take code", e.value)
		if err == nil && rec.Token.UserID != "" {
			s.used[key] = entry{value: []byte(rec.Token.UserID), expires: time.Now().Add(usedTTL)}
		}
	}
	s.mu.Unlock()
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info(code, "", ""), nil
}

func (s *Store) GetByAccess(_ context.Context, access string) (oauth2.TokenInfo, error) {
	rec, err := s.getToken("get by access", s.get, s.access, access)
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info("", access, ""), nil
}

// GetByAccessWithSession reads the token, then the session.
func (s *Store) GetByAccessWithSession(ctx context.Context, access, sessionID string) (oauth2.TokenInfo, *store.Session, error) {
	ti, err := s.GetByAccess(ctx, access)
	if ti == nil || err != nil {
		return nil, nil, err
	}
	sess, err := s.GetSession(ctx, sessionID)
	if errors.Is(err, store.ErrNotFound) {
		return ti, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return ti, sess, nil
}

func (s *Store) GetByRefresh(_ context.Context, refresh string) (oauth2.TokenInfo, error) {
	rec, err := s.getToken("get by refresh", s.get, s.refresh, refresh)
	if rec == nil || err != nil {
		return nil, err
	}
	return rec.Info("", "", refresh), nil
}

// getToken reads value's record from m with read (get, or take for a code that is used up); it
// returns (nil, nil) for a value it does not know, as go-oauth2 expects of a TokenStore.
func (s *Store) getToken(op string, read func(map[string]entry, string) ([]byte, bool), m map[string]entry, value string) (*store.TokenRecord, error) {
	if value == "" {
		return nil, nil
	}
	b, ok := read(m, store.TokenKey(value))
	if !ok {
		return nil, nil
	}
	return decode[store.TokenRecord](op, b)
}

func (s *Store) RemoveByCode(_ context.Context, code string) error {
	if code == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.codes, store.TokenKey(code))
	return nil
}

func (s *Store) RemoveByAccess(_ context.Context, access string) error {
	if access == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.access, store.TokenKey(access))
	return nil
}

// RemoveByRefresh also removes the access token issued with the refresh token. go-oauth2's
// refresh grant asks to remove the old access token by its value, which a record without raw
// values cannot give back; removing it here is what revokes it (RFC 7009 asks the same of a
// revoked refresh token).
func (s *Store) RemoveByRefresh(_ context.Context, refresh string) error {
	if refresh == "" {
		return nil
	}
	key := store.TokenKey(refresh)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.refresh[key]
	if !ok {
		return nil
	}
	delete(s.refresh, key)
	var rec store.TokenRecord
	if err := store.Decode(e.value, &rec); err != nil {
		return fmt.Errorf("memstore: remove by refresh: %w", err)
	}
	if rec.AccessKey != "" {
		delete(s.access, rec.AccessKey)
	}
	return nil
}

// TakeRefresh removes the refresh token and its access token under one hold of the lock, which
// is what makes it atomic.
func (s *Store) TakeRefresh(_ context.Context, refresh string, usedTTL time.Duration) (oauth2.TokenInfo, error) {
	if usedTTL <= 0 {
		return nil, fmt.Errorf("memstore: take refresh: used ttl %v is not positive", usedTTL)
	}
	if refresh == "" {
		return nil, nil
	}
	key := store.TokenKey(refresh)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.refresh[key]
	if !ok {
		return nil, nil
	}
	delete(s.refresh, key)
	if !e.live(time.Now()) {
		return nil, nil
	}
	rec, err := decode[store.TokenRecord]("take refresh", e.value)
	if err != nil {
		return nil, err
	}
	if rec.Token.UserID != "" {
		s.used[key] = entry{value: []byte(rec.Token.UserID), expires: time.Now().Add(usedTTL)}
	}
	if rec.AccessKey != "" {
		delete(s.access, rec.AccessKey)
	}
	return rec.Info("", "", refresh), nil
}

// ---- consents ----

func (s *Store) PutConsent(_ context.Context, clientID string, userID int64, scopes []string) error {
	b, err := encodeConsent(userID, scopes)
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
	scopes, err := decode[[]string]("get consent", b)
	if err != nil {
		return nil, err
	}
	return *scopes, nil
}

func (s *Store) ListConsents(_ context.Context, clientID string) (map[int64][]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64][]string, len(s.consents[clientID]))
	for userID, b := range s.consents[clientID] {
		scopes, err := decode[[]string]("list consents", b)
		if err != nil {
			return nil, err
		}
		out[userID] = *scopes
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

// encodeConsent is the stored form of a consent, the JSON array redisstore stores too. User id 0
// is refused because DeleteConsents takes it to mean everybody.
func encodeConsent(userID int64, scopes []string) ([]byte, error) {
	if userID <= 0 {
		return nil, fmt.Errorf("user id %d is not positive", userID)
	}
	if scopes == nil {
		scopes = []string{} // "[]", so that it reads back as no scope rather than null
	}
	return json.Marshal(scopes)
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
	if len(next) == 0 {
		return false, errors.New("memstore: swap key set: the new key set is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(old) == 0 {
		if s.keySet != nil {
			return false, nil
		}
	} else if !bytes.Equal(s.keySet, old) {
		return false, nil
	}
	s.keySet = bytes.Clone(next)
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
	for _, m := range s.expiring() {
		for k, e := range m {
			buf.WriteString(k)
			buf.WriteByte('\n')
			buf.Write(e.value)
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
		b, err := json.Marshal(a.Step)
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
	for i, a := range steps {
		tr, ok := s.traces[a.ID]
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
		}
		tr.meta.Merge(a.Meta)
		if len(tr.steps) < maxTraceSteps {
			tr.steps = append(tr.steps, encoded[i])
		}
		tr.expires = now.Add(retention)
		s.capTraces(now, tr.share, caps[tr.share])
	}
	return nil
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
	started, meta, steps := tr.startedAt, tr.meta, slices.Clone(tr.steps)
	s.mu.Unlock()
	return decodeTrace(id, started, meta, steps)
}

// ListTraces compares StartedAt with since to the millisecond, as redisstore's index does.
func (s *Store) ListTraces(_ context.Context, since time.Time, limit int) ([]*store.Trace, error) {
	if limit <= 0 {
		limit = defaultTraceLimit
	}
	type listed struct {
		id string
		tr trace
	}
	now := time.Now()
	s.mu.Lock()
	found := make([]listed, 0)
	for id, tr := range s.traces {
		if tr.live(now) && (since.IsZero() || tr.startedAt.UnixMilli() >= since.UnixMilli()) {
			// The slice header is copied, and the steps it holds are never changed in place.
			found = append(found, listed{id, *tr})
		}
	}
	s.mu.Unlock()

	slices.SortFunc(found, func(a, b listed) int { return traceOrder(b.id, &b.tr, a.id, &a.tr) })
	found = found[:min(len(found), limit)]
	traces := make([]*store.Trace, 0, len(found))
	for _, f := range found {
		tr, err := decodeTrace(f.id, f.tr.startedAt, f.tr.meta, f.tr.steps)
		if err != nil {
			return nil, err
		}
		traces = append(traces, tr)
	}
	return traces, nil
}

func decodeTrace(id string, started time.Time, meta store.TraceMeta, raw [][]byte) (*store.Trace, error) {
	tr := &store.Trace{ID: id, StartedAt: started, TraceMeta: meta, Steps: make([]store.TraceStep, len(raw))}
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

func (s *Store) get(m map[string]entry, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := m[key]
	if !ok || !e.live(time.Now()) {
		return nil, false
	}
	return e.value, true
}

// take removes and returns a live record under the lock, which is what makes a take atomic.
func (s *Store) take(m map[string]entry, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := m[key]
	if !ok {
		return nil, false
	}
	delete(m, key)
	if !e.live(time.Now()) {
		return nil, false
	}
	return e.value, true
}

// expiresAt is the entry expiry for a TTL from store.NewTokenRecord: entries keep deadlines, and
// a refresh token that never expires keeps the zero one.
func expiresAt(now time.Time, ttl time.Duration) time.Time {
	if ttl == store.NoExpiry {
		return time.Time{}
	}
	return now.Add(ttl)
}

func decode[T any](op string, b []byte) (*T, error) {
	v := new(T)
	if err := store.Decode(b, v); err != nil {
		return nil, fmt.Errorf("memstore: %s: %w", op, err)
	}
	return v, nil
}
