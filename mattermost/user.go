package mattermost

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AuthServiceGitLab is the AuthService of users who sign in with GitLab (model.UserAuthServiceGitlab).
const AuthServiceGitLab = "gitlab"

// User is the Mattermost user made of a GitLab user, as the gitlab provider's userFromGitLabUser
// makes it. AuthData is the account key: Mattermost finds the person's account by it at every
// sign-in, so it must never change for the same person.
type User struct {
	AuthService string
	AuthData    string
	Username    string
	Email       string
	FirstName   string
	LastName    string
	// ID is GitLab's numeric id, of which AuthData is the decimal form.
	ID int64
}

// gitLabUser is the gitlab provider's GitLabUser: only these keys of /api/v4/user matter, and an
// id that is not a JSON integer fitting int64 fails the decoding.
type gitLabUser struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Login    string `json:"login"`
	Email    string `json:"email"`
	Name     string `json:"name"`
}

// The gitlab provider's IsValid errors, in its words.
var (
	errZeroID     = errors.New("user id can't be 0")
	errEmptyEmail = errors.New("user e-mail should not be empty")
)

// UserFromGitLab decodes a /api/v4/user body as Mattermost's gitlab provider does (a
// json.Decoder reading the first JSON value, so trailing data is ignored), applies its IsValid
// checks, and returns the user Mattermost would make. Failures are *UserError wrapping
// ErrUserParse.
func UserFromGitLab(body []byte) (*User, error) {
	var glu gitLabUser
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&glu); err != nil {
		return nil, &UserError{Reason: ErrUserParse, Body: body, Err: err}
	}
	if glu.ID == 0 {
		return nil, &UserError{Reason: ErrUserParse, Body: body, Err: errZeroID}
	}
	if glu.Email == "" {
		return nil, &UserError{Reason: ErrUserParse, Body: body, Err: errEmptyEmail}
	}
	return userFromGitLabUser(glu), nil
}

func userFromGitLabUser(glu gitLabUser) *User {
	u := &User{
		AuthService: AuthServiceGitLab,
		AuthData:    strconv.FormatInt(glu.ID, 10),
		ID:          glu.ID,
	}
	username := glu.Username
	if username == "" {
		username = glu.Login
	}
	u.Username = CleanUsername(username)

	// Split on single spaces, not strings.Fields: " Ada" gives an empty first name and
	// "Ada  Lovelace" a last name of " Lovelace", as in Mattermost.
	parts := strings.Split(glu.Name, " ")
	if len(parts) >= 2 {
		u.FirstName = parts[0]
		u.LastName = strings.Join(parts[1:], " ")
	} else {
		u.FirstName = glu.Name
	}

	u.Email = strings.ToLower(glu.Email)
	return u
}

// Limits of model.User.IsValid that depend on what GitLab sends.
const (
	emailMaxLength     = 128
	firstNameMaxRunes  = 64
	lastNameMaxRunes   = 64
	authDataMaxLength  = 128
	invalidUserMessage = "Mattermost would refuse to create an account for this person"
)

// ValidForSignup reports what model.User.IsValid would refuse when Mattermost creates an account
// for this person, which it does at the first sign-in of someone who has none. People who already
// have an account are not checked again. It returns nil or a *UserError wrapping
// ErrSignupRefused, with Mattermost's message ("Invalid email.", ...).
//
// Mattermost strips some invisible Unicode from names before checking their length, so a name
// reported here as too long may in rare cases still pass.
func (u *User) ValidForSignup() error {
	refuse := func(msg string) error {
		return &UserError{Reason: ErrSignupRefused, Err: errors.New(msg)}
	}
	if len(u.Email) > emailMaxLength || u.Email == "" || !isValidEmail(u.Email) {
		return refuse("Invalid email.")
	}
	if utf8.RuneCountInString(u.FirstName) > firstNameMaxRunes {
		return refuse("Invalid first name.")
	}
	if utf8.RuneCountInString(u.LastName) > lastNameMaxRunes {
		return refuse("Invalid last name.")
	}
	if len(u.AuthData) > authDataMaxLength {
		return refuse("Invalid auth data.")
	}
	if !IsValidUsername(u.Username) {
		return refuse(`Username must begin with a letter, and contain between 3 to 22 lowercase characters made up of numbers, letters, and the symbols ".", "-", and "_".`)
	}
	return nil
}

// isValidEmail is model.IsValidEmail: lower case, parsed by net/mail, and a bare address.
func isValidEmail(email string) bool {
	if strings.ToLower(email) != email {
		return false
	}
	addr, err := mail.ParseAddress(email)
	if err != nil {
		return false
	}
	return addr.Name == ""
}
