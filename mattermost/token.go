package mattermost

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// AccessResponse is model.AccessResponse, into which Mattermost decodes the token response.
// ExpiresInSeconds is an int32 as there: an expires_in that is a string, a fraction or beyond
// int32 fails the decoding and with it the sign-in.
type AccessResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresInSeconds int32  `json:"expires_in"`
	Scope            string `json:"scope"`
	RefreshToken     string `json:"refresh_token"`
	IdToken          string `json:"id_token"`
}

// accessTokenType is model.AccessTokenType, compared with the lower-cased token_type.
const accessTokenType = "bearer"

// errNullTokenResponse explains a JSON null: Mattermost decodes into a *AccessResponse, gets nil
// without an error, and its handler panics on the next line.
var errNullTokenResponse = errors.New("the body is JSON null, on which Mattermost's AuthorizeOAuthUser dereferences a nil response and its handler panics")

// ParseTokenResponse applies AuthorizeOAuthUser's checks to a token response with this status
// and body. It returns the response, or a *TokenError wrapping ErrBadTokenResponse,
// ErrBadTokenType or ErrMissingAccessToken.
func ParseTokenResponse(status int, body []byte) (*AccessResponse, error) {
	return parseTokenResponse("", status, bytes.NewReader(body))
}

func parseTokenResponse(endpoint string, status int, r io.Reader) (*AccessResponse, error) {
	// Like Mattermost, decode the first JSON value straight off the stream and keep what was
	// read for the error: a provider that sends its JSON and holds the connection open does not
	// stall the sign-in.
	var buf bytes.Buffer
	var ar *AccessResponse
	err := json.NewDecoder(io.TeeReader(r, &buf)).Decode(&ar)
	if err != nil || status != http.StatusOK {
		e := &TokenError{Reason: ErrBadTokenResponse, URL: endpoint, Status: status, Body: buf.String(), Err: err}
		e.readOAuthError(buf.Bytes())
		e.redact(ar)
		return nil, e
	}
	if ar == nil {
		return nil, &TokenError{Reason: ErrBadTokenResponse, URL: endpoint, Status: status, Body: buf.String(), Err: errNullTokenResponse}
	}
	if strings.ToLower(ar.TokenType) != accessTokenType {
		e := &TokenError{Reason: ErrBadTokenType, URL: endpoint, Status: status, Body: buf.String(), TokenType: ar.TokenType}
		e.redact(ar)
		return nil, e
	}
	if ar.AccessToken == "" {
		e := &TokenError{Reason: ErrMissingAccessToken, URL: endpoint, Status: status, Body: buf.String()}
		e.redact(ar)
		return nil, e
	}
	return ar, nil
}
