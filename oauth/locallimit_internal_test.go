package oauth

import (
	"strconv"
	"testing"
	"time"

	"github.com/ssobridge/ssobridge/oauth/store"
)

// A flood from more addresses than the instance remembers, of which only a few have gone quiet,
// empties the memory once rather than walking it for every new address: the next addresses find
// room.
func TestTheMemoryOfAddressesIsEmptiedWhenFewOfThemLapsed(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	now := time.Now()
	var u localUse
	for i := range maxLocalUse {
		at := now
		if i < maxLocalUse/20 {
			at = now.Add(-time.Hour) // a twentieth went quiet an hour ago
		}
		u.spend("a"+strconv.Itoa(i), l, at)
	}
	if len(u.m) != maxLocalUse {
		t.Fatalf("%d addresses remembered, want %d", len(u.m), maxLocalUse)
	}
	u.spend("one more", l, now)
	if len(u.m) != 1 {
		t.Errorf("after one more address, %d are remembered; want the memory emptied (19 twentieths had not lapsed)", len(u.m))
	}
	for i := range 1000 {
		u.spend("b"+strconv.Itoa(i), l, now)
	}
	if len(u.m) != 1001 {
		t.Errorf("%d addresses remembered after 1,000 more, want 1,001", len(u.m))
	}
}

// Addresses whose use lapsed make room for new ones, and the others are kept.
func TestLapsedAddressesMakeRoomAndTheOthersAreKept(t *testing.T) {
	l := store.Limit{Rate: 600, Period: time.Minute, Burst: 600}
	now := time.Now()
	var u localUse
	for i := range maxLocalUse {
		at := now
		if i%2 == 0 {
			at = now.Add(-time.Hour)
		}
		u.spend("a"+strconv.Itoa(i), l, at)
	}
	u.spend("one more", l, now)
	if got, want := len(u.m), maxLocalUse/2+1; got != want {
		t.Errorf("%d addresses remembered, want %d: the half that lapsed forgotten, the rest and the new one kept", got, want)
	}
}
