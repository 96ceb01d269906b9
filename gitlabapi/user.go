package gitlabapi

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// States a GitLab user can be in; only StateActive may sign in.
const (
	StateActive                 = "active"
	StateBlocked                = "blocked"
	StateLDAPBlocked            = "ldap_blocked"
	StateBlockedPendingApproval = "blocked_pending_approval"
	StateBanned                 = "banned"
	StateDeactivated            = "deactivated"
)

// User is the part of GitLab's /api/v4/user body the bridge reads. The bridge hands the body
// itself to clients unchanged, so fields it does not read are not lost.
type User struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Email    string `json:"email"`
	// External, AvatarURL and WebURL are read as GitLab sends them; one of another type is left
	// empty rather than refuse the person.
	External  bool   `json:"external"`
	AvatarURL string `json:"avatar_url"`
	WebURL    string `json:"web_url"`
}

// UserBody is the /api/v4/user body the bridge writes for a person of a provider that is not
// GitLab: what Mattermost reads (a non-zero integer id, username, email, name), with the fields
// GitLab always sends, so that a client of GitLab's API reads it as GitLab's.
type UserBody struct {
	ID          int64  `json:"id"`
	Username    string `json:"username"`
	Name        string `json:"name"`
	State       string `json:"state"`
	Locked      bool   `json:"locked"`
	AvatarURL   string `json:"avatar_url"`
	WebURL      string `json:"web_url"`
	Email       string `json:"email"`
	PublicEmail string `json:"public_email"`
	External    bool   `json:"external"`
	Bot         bool   `json:"bot"`
}

// UserIDError is a user body, JSON as GitLab writes it, whose id Mattermost would refuse: none,
// not an integer, or 0. It is the Err of the UpstreamError of the user call.
type UserIDError struct{ Problem string }

func (e *UserIDError) Error() string { return e.Problem }

// DecodeUser reads a /api/v4/user body. It accepts only what Mattermost would accept for the
// fields that identify a person: a JSON object whose id is a non-zero integer. It does not
// require an email (that is the caller's policy) but reports one that is missing through
// (*User).Problem.
func DecodeUser(body []byte) (*User, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("the user body is not a JSON object")
	}
	var raw struct {
		ID        json.RawMessage `json:"id"`
		Username  string          `json:"username"`
		Name      string          `json:"name"`
		State     string          `json:"state"`
		Email     string          `json:"email"`
		External  json.RawMessage `json:"external"`
		AvatarURL json.RawMessage `json:"avatar_url"`
		WebURL    json.RawMessage `json:"web_url"`
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, fmt.Errorf("the user body is not valid GitLab user JSON: %v", err)
	}
	if len(raw.ID) == 0 || string(raw.ID) == "null" {
		return nil, &UserIDError{Problem: "the user body has no id"}
	}
	var id int64
	if err := json.Unmarshal(raw.ID, &id); err != nil {
		return nil, &UserIDError{Problem: fmt.Sprintf("the user id %.40s is not an integer (Mattermost needs a JSON number)", raw.ID)}
	}
	if id == 0 {
		return nil, &UserIDError{Problem: "the user id is 0 (Mattermost refuses it)"}
	}
	u := &User{ID: id, Username: raw.Username, Name: raw.Name, State: raw.State, Email: raw.Email}
	_ = json.Unmarshal(raw.External, &u.External)
	_ = json.Unmarshal(raw.AvatarURL, &u.AvatarURL)
	_ = json.Unmarshal(raw.WebURL, &u.WebURL)
	return u, nil
}

// Problem returns why Mattermost would refuse this user, or "" if it would not.
func (u *User) Problem() string {
	switch {
	case u.Email == "":
		return "GitLab returned the user without an email address, and Mattermost requires one; the bridge's application at GitLab needs the read_user scope"
	case u.Username == "":
		return "GitLab returned the user without a username"
	}
	return ""
}
