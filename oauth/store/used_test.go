package store_test

import (
	"testing"

	"github.com/ssobridge/ssobridge/oauth/store"
)

func TestUsedMarks(t *testing.T) {
	t.Run("a mark that names only its session is kept as the session id, as a take writes it", func(t *testing.T) {
		v, err := store.EncodeUsed(store.Used{SessionID: "0123abcd"})
		if err != nil || v != "0123abcd" {
			t.Fatalf("got %q, %v", v, err)
		}
	})
	round := []store.Used{
		{SessionID: "0123abcd"},
		{SessionID: "0123abcd", Refusal: "redirect_uri_mismatch"},
		{SessionID: "0123abcd", Refusal: "code_other_client", TraceID: "beef"},
	}
	for _, u := range round {
		t.Run("a mark reads back as written: "+u.Refusal, func(t *testing.T) {
			v, err := store.EncodeUsed(u)
			if err != nil {
				t.Fatal(err)
			}
			got, err := store.DecodeUsed(v)
			if err != nil || got != u {
				t.Fatalf("got %+v, %v, want %+v", got, err, u)
			}
		})
	}
	t.Run("a mark without a session is refused", func(t *testing.T) {
		if _, err := store.EncodeUsed(store.Used{Refusal: "code_expired"}); err == nil {
			t.Fatal("encoded")
		}
	})
	for _, v := range []string{`{"refusal":"x"}`, `{not json`} {
		t.Run("a stored mark that does not decode is an error, not another session: "+v, func(t *testing.T) {
			if u, err := store.DecodeUsed(v); err == nil {
				t.Fatalf("decoded as %+v", u)
			}
		})
	}
}
