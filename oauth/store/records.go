package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The stored forms of records, shared by both backends so that they store the same bytes.
// Records are written as encoding/json writes them (see Encode) with the version set to FormatVersion; a record of a later
// version is refused on reading (a bridge was downgraded over data a newer one wrote), one of an
// earlier version is read as it was written.

// checkVersion refuses a record a newer bridge wrote.
func checkVersion(kind string, v int) error {
	if v > FormatVersion {
		return fmt.Errorf("a %s record of format version %d, written by a newer bridge (this one reads up to %d): run the newer version", kind, v, FormatVersion)
	}
	return nil
}

// EncodeSession is the stored form of a session.
func EncodeSession(s *Session) ([]byte, error) {
	c := *s
	c.Version = FormatVersion
	return Encode(&c)
}

// DecodeSession reads a session EncodeSession (or a bridge of format version 1) wrote.
func DecodeSession(b []byte) (*Session, error) {
	s := new(Session)
	if err := Decode(b, s); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return s, checkVersion("session", s.Version)
}

// EncodeAuthorization is the stored form of a parked request.
func EncodeAuthorization(a *Authorization) ([]byte, error) {
	c := *a
	c.Version = FormatVersion
	return Encode(&c)
}

// DecodeAuthorization reads a parked request.
func DecodeAuthorization(b []byte) (*Authorization, error) {
	a := new(Authorization)
	if err := Decode(b, a); err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	return a, checkVersion("authorization", a.Version)
}

// EncodeCode is the stored form of a code.
func EncodeCode(c *Code) ([]byte, error) {
	v := *c
	v.Version = FormatVersion
	return Encode(&v)
}

// DecodeCode reads a code.
func DecodeCode(b []byte) (*Code, error) {
	c := new(Code)
	if err := Decode(b, c); err != nil {
		return nil, fmt.Errorf("code: %w", err)
	}
	return c, checkVersion("code", c.Version)
}

// EncodePair is the stored form of a token pair.
func EncodePair(p *TokenPair) ([]byte, error) {
	v := *p
	v.Version = FormatVersion
	return Encode(&v)
}

// DecodePair reads a token pair.
func DecodePair(b []byte) (*TokenPair, error) {
	p := new(TokenPair)
	if err := Decode(b, p); err != nil {
		return nil, fmt.Errorf("token pair: %w", err)
	}
	return p, checkVersion("token pair", p.Version)
}

// consentRecord is the stored form of a consent.
type consentRecord struct {
	Version int      `json:"v"`
	Scopes  []string `json:"scopes"`
}

// EncodeConsent is the stored form of the scopes a person consented to.
func EncodeConsent(scopes []string) ([]byte, error) {
	if scopes == nil {
		scopes = []string{} // [], so that it reads back as no scope rather than null
	}
	return json.Marshal(consentRecord{Version: FormatVersion, Scopes: scopes})
}

// DecodeConsent reads a consent: the form EncodeConsent writes, or the bare JSON array of scopes
// of format version 1.
func DecodeConsent(b []byte) ([]string, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		var scopes []string
		if err := Decode(t, &scopes); err != nil {
			return nil, fmt.Errorf("consent: %w", err)
		}
		return scopes, nil
	}
	var r consentRecord
	if err := Decode(b, &r); err != nil {
		return nil, fmt.Errorf("consent: %w", err)
	}
	if err := checkVersion("consent", r.Version); err != nil {
		return nil, err
	}
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	return r.Scopes, nil
}

// A mark is stored as its JSON header, then, while the value is MarkTaken, a newline and the
// record taken, byte for byte, so that the same attempt taking it again gets it back unchanged. The
// header's fields come in a fixed order, "kind" first, which tells a mark from any record (a
// redisstore script writes headers too, and looks for that prefix).

// markPrefix starts every mark's header.
const markPrefix = `{"kind":`

// IsMark reports whether a stored value is a mark rather than a live record.
func IsMark(b []byte) bool { return bytes.HasPrefix(b, []byte(markPrefix)) }

// EncodeMark is the stored form of a mark, with the record taken (nil once the mark is final).
func EncodeMark(m Mark, rec []byte) []byte {
	var b bytes.Buffer
	b.Grow(markLen + len(m.Kind) + len(m.Attempt) + len(m.Refusal) + len(m.RefusalTrace) + len(rec))
	b.WriteString(markPrefix)
	writeJSONString(&b, m.Kind)
	b.WriteString(`,"v":`)
	b.WriteString(strconv.Itoa(FormatVersion))
	b.WriteString(`,"state":`)
	writeJSONString(&b, string(m.State))
	b.WriteString(`,"attempt":`)
	writeJSONString(&b, m.Attempt)
	b.WriteString(`,"at":`)
	b.WriteString(strconv.FormatInt(m.At.UnixMilli(), 10))
	if m.Replayed {
		b.WriteString(`,"replayed":true`)
	}
	if m.Refusal != "" {
		b.WriteString(`,"refusal":`)
		writeJSONString(&b, m.Refusal)
	}
	if m.RefusalTrace != "" {
		b.WriteString(`,"refusal_trace":`)
		writeJSONString(&b, m.RefusalTrace)
	}
	b.WriteByte('}')
	if rec != nil {
		b.WriteByte('\n')
		b.Write(rec)
	}
	// A copy of its own size: the memory store keeps the mark as it is, for minutes, and the
	// buffer may be larger (a taken authorization's mark, with its record, up to twice).
	return bytes.Clone(b.Bytes())
}

// markLen is about what a mark's JSON adds to its strings: its names, quotes, time and
// punctuation.
const markLen = 128

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// markHeader is a mark's header as JSON holds it: the time in Unix milliseconds, which a script
// can write.
type markHeader struct {
	Kind         string    `json:"kind"`
	Version      int       `json:"v"`
	State        MarkState `json:"state"`
	Attempt      string    `json:"attempt"`
	At           int64     `json:"at"`
	Replayed     bool      `json:"replayed"`
	Refusal      string    `json:"refusal"`
	RefusalTrace string    `json:"refusal_trace"`
}

// DecodeMark reads a mark, and the record it holds while MarkTaken (nil otherwise).
func DecodeMark(b []byte) (Mark, []byte, error) {
	if !IsMark(b) {
		return Mark{}, nil, errors.New("mark: not a mark")
	}
	head, rec, _ := bytes.Cut(b, []byte{'\n'})
	var h markHeader
	if err := Decode(head, &h); err != nil {
		return Mark{}, nil, fmt.Errorf("mark: %w", err)
	}
	if err := checkVersion("mark", h.Version); err != nil {
		return Mark{}, nil, err
	}
	switch {
	case h.Version < 2: // marks came with format 2
		return Mark{}, nil, fmt.Errorf("mark: format version %d", h.Version)
	case h.Kind != KindCode && h.Kind != KindRefresh && h.Kind != KindAuthorization:
		return Mark{}, nil, fmt.Errorf("mark: unknown kind %.20q", h.Kind)
	case h.State != MarkTaken && h.State != MarkIssued && h.State != MarkRefused && h.State != MarkRevoked && h.State != MarkEvicted:
		return Mark{}, nil, fmt.Errorf("mark: unknown state %.20q", h.State)
	}
	m := Mark{Version: h.Version, Kind: h.Kind, State: h.State, Attempt: h.Attempt, At: time.UnixMilli(h.At).UTC(),
		Replayed: h.Replayed, Refusal: h.Refusal, RefusalTrace: h.RefusalTrace}
	if len(rec) == 0 {
		rec = nil
	}
	return m, rec, nil
}

// Mark kinds.
const (
	KindCode          = "code"
	KindRefresh       = "refresh"
	KindAuthorization = "authorization"
)

// bindingRecord is the stored form of a binding: the id first, so that a redisstore script can
// read it (and write it, in place of the 0 of a template) without decoding JSON, whose numbers
// Lua holds as doubles; and the email normalised too (EmailKey), which a script compares and
// cannot compute (Lua's lower case is ASCII's only).
type bindingRecord struct {
	ID       int64       `json:"id"`
	Version  int         `json:"v"`
	Provider string      `json:"provider"`
	Subject  string      `json:"subject,omitempty"`
	Email    string      `json:"email,omitempty"`
	EmailKey string      `json:"email_key,omitempty"`
	How      BindingKind `json:"how"`
	At       time.Time   `json:"at"`
}

// EncodeBinding is the stored form of a binding or a reservation; it starts with `{"id":` and
// the id's digits.
func EncodeBinding(b *Binding) ([]byte, error) {
	return json.Marshal(bindingRecord{ID: b.ID, Version: FormatVersion, Provider: b.Provider, Subject: b.Subject,
		Email: b.Email, EmailKey: NormalizeEmail(b.Email), How: b.How, At: b.At})
}

// DecodeBinding reads a binding EncodeBinding wrote.
func DecodeBinding(b []byte) (*Binding, error) {
	var r bindingRecord
	if err := Decode(b, &r); err != nil {
		return nil, fmt.Errorf("binding: %w", err)
	}
	if err := checkVersion("binding", r.Version); err != nil {
		return nil, err
	}
	return &Binding{Provider: r.Provider, Subject: r.Subject, Email: r.Email, ID: r.ID, How: r.How, At: r.At}, nil
}

// PeekedAuthorization reads a stored authorization as PeekAuthorization returns it: the record
// and, once taken, when (see Store.PeekAuthorization).
func PeekedAuthorization(b []byte) (*Authorization, time.Time, error) {
	if !IsMark(b) {
		a, err := DecodeAuthorization(b)
		return a, time.Time{}, err
	}
	m, held, err := DecodeMark(b)
	switch {
	case err != nil:
		return nil, time.Time{}, err
	case m.State == MarkEvicted:
		return nil, time.Time{}, ErrEvicted
	case m.Kind != KindAuthorization || held == nil:
		return nil, time.Time{}, fmt.Errorf("mark: a %s mark where an authorization was", m.Kind)
	}
	a, err := DecodeAuthorization(held)
	return a, m.At, err
}
