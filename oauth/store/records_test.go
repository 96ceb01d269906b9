package store_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestMarksRoundTripWithTheRecordTheyHold(t *testing.T) {
	at := time.UnixMilli(time.Now().UnixMilli()).UTC()
	rec := []byte(`{"v":2,"client_id":"c","note":"a \"quoted\"\nline"}`)
	for _, m := range []store.Mark{
		{Kind: store.KindCode, State: store.MarkTaken, Attempt: "a1", At: at},
		{Kind: store.KindRefresh, State: store.MarkTaken, Attempt: "a2", At: at, Replayed: true},
		{Kind: store.KindCode, State: store.MarkRefused, Attempt: "a3", At: at, Refusal: "redirect_uri_mismatch", RefusalTrace: "t\"1"},
	} {
		b := store.EncodeMark(m, rec)
		if !store.IsMark(b) {
			t.Fatalf("%s is not recognised as a mark", b)
		}
		got, held, err := store.DecodeMark(b)
		if err != nil {
			t.Fatal(err)
		}
		m.Version = store.FormatVersion
		if got != m || !bytes.Equal(held, rec) {
			t.Errorf("round trip of %+v gave %+v holding %s", m, got, held)
		}
		// A final mark holds no record.
		if _, held, err := store.DecodeMark(store.EncodeMark(m, nil)); err != nil || held != nil {
			t.Errorf("a mark without a record decodes with %q, %v", held, err)
		}
	}
	for _, rec := range []string{`{"v":2,"client_id":"c"}`, `{"client_id":"c"}`, `["read_user"]`, ``} {
		if store.IsMark([]byte(rec)) {
			t.Errorf("the record %s is taken for a mark", rec)
		}
	}
}

func TestConsentsOfEitherFormatAreRead(t *testing.T) {
	b, err := store.EncodeConsent([]string{"openid", "read_user"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{b, []byte(`["openid","read_user"]`), []byte(` ["openid","read_user"]`)} {
		got, err := store.DecodeConsent(in)
		if err != nil || strings.Join(got, " ") != "openid read_user" {
			t.Errorf("%s read as %q, %v", in, got, err)
		}
	}
	if got, err := store.DecodeConsent([]byte(`{"v":2,"scopes":null}`)); err != nil || got == nil || len(got) != 0 {
		t.Errorf("a consent of no scope read as %#v, %v; want an empty list", got, err)
	}
}

// A record a newer bridge wrote is refused, with a message that says so, rather than read wrong.
func TestARecordOfALaterFormatIsRefused(t *testing.T) {
	for what, decode := range map[string]func([]byte) error{
		"session": func(b []byte) error { _, err := store.DecodeSession(b); return err },
		"code":    func(b []byte) error { _, err := store.DecodeCode(b); return err },
		"pair":    func(b []byte) error { _, err := store.DecodePair(b); return err },
		"consent": func(b []byte) error { _, err := store.DecodeConsent(b); return err },
	} {
		err := decode([]byte(`{"v":99}`))
		if err == nil || !strings.Contains(err.Error(), "newer bridge") {
			t.Errorf("a %s of format 99: %v, want an error naming a newer bridge", what, err)
		}
	}
}

func TestRefOfReadsTheSignInAValueNames(t *testing.T) {
	sid := store.NewID(store.SessionIDBytes)
	v := store.ValueFor("random-part_with-dots.and.more", sid)
	if r := store.RefOf(v); r.SessionID != sid || r.Key != store.TokenKey(v) {
		t.Errorf("RefOf(%q) = %+v", v, r)
	}
	for _, v := range []string{"", "no-dot", "x." + strings.ToUpper(sid), "x." + sid[:31], "x." + sid + "0"} {
		if r := store.RefOf(v); r.SessionID != "" || r.Key != store.TokenKey(v) {
			t.Errorf("RefOf(%q) = %+v, want no sign-in", v, r)
		}
	}
}

// A mark is read back from Redis or memory: whatever bytes a store holds, DecodeMark must not
// panic, and what it accepts must encode back to the same header.
func FuzzDecodeMark(f *testing.F) {
	f.Add(store.EncodeMark(store.Mark{Kind: store.KindCode, State: store.MarkTaken, Attempt: "a", At: time.Now()}, []byte(`{"v":2}`)))
	f.Add(store.EncodeMark(store.Mark{Kind: store.KindRefresh, State: store.MarkRefused, Refusal: "x", RefusalTrace: "y"}, nil))
	f.Add([]byte(`{"kind":"code","v":2,"state":"taken","attempt":"a","at":1e30}`))
	f.Add([]byte(`{"kind":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, held, err := store.DecodeMark(b)
		if err != nil {
			return
		}
		again, held2, err := store.DecodeMark(store.EncodeMark(m, held))
		if err != nil || again != m || !bytes.Equal(held, held2) {
			t.Fatalf("%q decoded as %+v, which does not survive a round trip: %+v, %v", b, m, again, err)
		}
	})
}

// A token's value comes from whoever presents it.
func FuzzRefOf(f *testing.F) {
	f.Add("abc." + store.NewID(store.SessionIDBytes))
	f.Add("...")
	f.Fuzz(func(t *testing.T, v string) {
		r := store.RefOf(v)
		if r.Key != store.TokenKey(v) {
			t.Fatal("the key is not the value's TokenKey")
		}
		if r.SessionID != "" && (!store.IsID(r.SessionID, store.SessionIDBytes) || !strings.HasSuffix(v, "."+r.SessionID)) {
			t.Fatalf("RefOf(%q) names sign-in %q", v, r.SessionID)
		}
	})
}

// A mark is kept as EncodeMark returns it (the memory store holds it for minutes): its buffer
// holds what it says and what the allocator's size classes round it to (an eighth at most), not
// the doubling of a buffer left to grow.
func TestAMarkKeepsNoMoreMemoryThanItHolds(t *testing.T) {
	for _, size := range []int{0, 90, 300, 1000, 5000} {
		rec := bytes.Repeat([]byte("x"), size)
		b := store.EncodeMark(store.Mark{Kind: "authorization", State: store.MarkTaken, Attempt: store.NewAttempt(), At: time.Now()}, rec)
		if waste := cap(b) - len(b); waste > 64+len(b)/8 {
			t.Errorf("a mark of %d bytes (a record of %d) keeps %d bytes more than it holds", len(b), size, waste)
		}
	}
}
