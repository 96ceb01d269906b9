package store

import (
	"errors"
	"math"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/models"
)

// TokenRecord is what a backend stores for a code, or for an access token and its refresh token,
// encoded as JSON. Both backends store the same bytes, and records outlive the bridge that wrote
// them (in Redis), so its JSON form must not change.
type TokenRecord struct {
	// Token has its Code, Access and Refresh emptied: the record must be useless to whoever reads
	// the store.
	Token models.Token `json:"token"`
	// AccessKey and RefreshKey are the TokenKey of the access and refresh token, so that a record
	// found under one of them can find the other half of its pair.
	AccessKey  string `json:"access_key,omitempty"`
	RefreshKey string `json:"refresh_key,omitempty"`
}

// NoExpiry is the TTL of a refresh token whose RefreshExpiresIn is zero: it lives until removed.
// It is positive, so that "store a value only if its TTL is positive" holds for every value.
const NoExpiry time.Duration = math.MaxInt64

// TokenTTLs is how long, from the now given to NewTokenRecord, each value of a token is to be
// kept. A value the token lacks, or whose lifetime has already run out, has a TTL that is not
// positive and is not to be stored at all, as if it had expired at once.
type TokenTTLs struct {
	Code, Access, Refresh time.Duration
}

// NewTokenRecord returns the record info is stored as and how long each of its values is kept.
// A code is stored under TokenKey of info's code; an access token under AccessKey, and its refresh
// token, if any, under RefreshKey. Every TTL is worked out from the same now, so that a backend
// that keeps deadlines can recover them exactly as now.Add(ttl).
func NewTokenRecord(info oauth2.TokenInfo, now time.Time) (TokenRecord, TokenTTLs, error) {
	rec := TokenRecord{Token: scrubbed(info)}
	var ttl TokenTTLs
	if info.GetCode() != "" {
		ttl.Code = info.GetCodeCreateAt().Add(info.GetCodeExpiresIn()).Sub(now)
		return rec, ttl, nil
	}
	access, refresh := info.GetAccess(), info.GetRefresh()
	if access == "" {
		return TokenRecord{}, TokenTTLs{}, errors.New("the token has neither a code nor an access token")
	}
	rec.AccessKey = TokenKey(access)
	ttl.Access = info.GetAccessCreateAt().Add(info.GetAccessExpiresIn()).Sub(now)
	if refresh != "" {
		rec.RefreshKey = TokenKey(refresh)
		ttl.Refresh = NoExpiry
		if exp := info.GetRefreshExpiresIn(); exp != 0 {
			ttl.Refresh = info.GetRefreshCreateAt().Add(exp).Sub(now)
		}
	}
	return rec, ttl, nil
}

// Info returns the record's token with the raw values it was looked up by put back, since
// go-oauth2 reads them from what the store returns and the record does not hold them. The token
// is the record's own, not a copy: a record is decoded afresh for each lookup, so nothing else
// sees it.
func (r *TokenRecord) Info(code, access, refresh string) *models.Token {
	r.Token.Code, r.Token.Access, r.Token.Refresh = code, access, refresh
	return &r.Token
}

// scrubbed copies the token without its code, access and refresh values.
func scrubbed(info oauth2.TokenInfo) models.Token {
	t := models.Token{
		ClientID:            info.GetClientID(),
		UserID:              info.GetUserID(),
		RedirectURI:         info.GetRedirectURI(),
		Scope:               info.GetScope(),
		CodeChallenge:       info.GetCodeChallenge(),
		CodeChallengeMethod: string(info.GetCodeChallengeMethod()),
		CodeCreateAt:        info.GetCodeCreateAt(),
		CodeExpiresIn:       info.GetCodeExpiresIn(),
		AccessCreateAt:      info.GetAccessCreateAt(),
		AccessExpiresIn:     info.GetAccessExpiresIn(),
		RefreshCreateAt:     info.GetRefreshCreateAt(),
		RefreshExpiresIn:    info.GetRefreshExpiresIn(),
	}
	if ext, ok := info.(oauth2.ExtendableTokenInfo); ok {
		t.Extension = ext.GetExtension()
	}
	return t
}
