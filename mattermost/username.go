package mattermost

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
)

// Mattermost's username rules (server/public/model/user.go).
const (
	usernameMinLength = 1
	usernameMaxLength = 64
)

var validUsernameChars = regexp.MustCompile(`^[a-z0-9\.\-_]+$`)

// restrictedUsernames are refused by IsValidUsername.
var restrictedUsernames = map[string]struct{}{
	"all":       {},
	"channel":   {},
	"matterbot": {},
	"system":    {},
}

// reservedNames are model.reservedName: CleanUsername empties a username equal to one of them.
// The list is longer than restrictedUsernames, which is why CleanUsername is not idempotent:
// "-signup-" cleans to "signup", which is a valid username, but "signup" cleans to a random one.
var reservedNames = []string{
	"admin",
	"api",
	"channel",
	"claim",
	"error",
	"files",
	"help",
	"landing",
	"login",
	"mfa",
	"oauth",
	"plug",
	"plugins",
	"post",
	"signup",
	"boards",
	"playbooks",
}

// IsValidUsername reports whether Mattermost accepts s as a username (model.IsValidUsername).
func IsValidUsername(s string) bool {
	if len(s) < usernameMinLength || len(s) > usernameMaxLength {
		return false
	}
	if !validUsernameChars.MatchString(s) {
		return false
	}
	_, found := restrictedUsernames[s]
	return !found
}

// CleanUsername turns a GitLab username into the Mattermost username, step for step as
// model.CleanUsername does: spaces become '-', the name is lower-cased, a reserved name is
// emptied, white space is trimmed, every character outside [a-z0-9.-_] becomes '-', leading and
// trailing '-' are trimmed, and a result that is still not a valid username is replaced by "a"
// followed by a random 26-character id, so two calls may then differ.
func CleanUsername(username string) string {
	s := strings.ToLower(strings.ReplaceAll(username, " ", "-"))

	for _, value := range reservedNames {
		if s == value {
			s = strings.ReplaceAll(s, value, "")
		}
	}

	s = strings.TrimSpace(s)

	// Mattermost ranges over the string as it was before the loop and replaces every occurrence
	// of each invalid character as it meets it. Invalid UTF-8 is already U+FFFD here, as
	// strings.ToLower rewrote it, so it becomes '-' like any other character.
	for _, c := range s {
		char := fmt.Sprintf("%c", c)
		if !validUsernameChars.MatchString(char) {
			s = strings.ReplaceAll(s, char, "-")
		}
	}

	s = strings.Trim(s, "-")

	if !IsValidUsername(s) {
		s = "a" + newID()
	}
	return s
}

// idEncoding is Mattermost's base32 alphabet for ids and random strings (model.NewId).
var idEncoding = base32.NewEncoding("ybndrfg8ejkmcpqxot1uwisza345h769").WithPadding(base32.NoPadding)

// newID is model.NewId: a version 4 UUID in Mattermost's base32, 26 characters.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return idEncoding.EncodeToString(b[:])
}

// newRandomString is model.NewRandomString: length characters of Mattermost's base32.
func newRandomString(length int) string {
	data := make([]byte, 1+(length*5/8))
	_, _ = rand.Read(data)
	return idEncoding.EncodeToString(data)[:length]
}
