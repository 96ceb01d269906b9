package mattermost

import (
	"encoding/base64"
	"encoding/json"
)

// Actions Mattermost puts in the state (model.OAuthAction*).
const (
	// ActionLogin is the action of /oauth/gitlab/login, the "GitLab" button on the login page.
	ActionLogin = "login"
	// ActionSignup is the action of /oauth/gitlab/signup.
	ActionSignup = "signup"
)

// stateTokenSize is model.TokenSize, the length of the one-time token in the state.
const stateTokenSize = 64

// NewState returns a state as Mattermost's GetAuthorizationCode makes it, and the one-time token
// inside it: the standard (padded) base64 of the JSON object {"action": action, "token": token},
// with "isMobile": "false" added for ActionLogin as GetOAuthLoginEndpoint does. The keys are
// sorted, as json.Marshal writes a map.
func NewState(action string) (state string, token string) {
	token = newRandomString(stateTokenSize)
	props := map[string]string{"action": action, "token": token}
	if action == ActionLogin {
		props["isMobile"] = "false"
	}
	// Marshalling a map[string]string cannot fail.
	b, _ := json.Marshal(props)
	return base64.StdEncoding.EncodeToString(b), token
}

// StateProps decodes a state the way AuthorizeOAuthUser does, to tell what a provider did to it.
// Mattermost itself ignores a JSON error here and then finds no token.
func StateProps(state string) (map[string]string, error) {
	b, err := base64.StdEncoding.DecodeString(state)
	if err != nil {
		return nil, err
	}
	var props map[string]string
	if err := json.Unmarshal(b, &props); err != nil {
		return nil, err
	}
	return props, nil
}
