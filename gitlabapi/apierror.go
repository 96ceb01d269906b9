package gitlabapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Message is GitLab's API error body: {"message":"401 Unauthorized"}.
type Message struct {
	Message string `json:"message"`
}

// StatusMessage returns GitLab's message for a status, "401 Unauthorized" for 401, with an
// optional detail after a dash, as GitLab writes "403 Forbidden - Your account has been blocked.".
func StatusMessage(status int, detail string) Message {
	m := strconv.Itoa(status) + " " + http.StatusText(status)
	if detail != "" {
		m += " - " + detail
	}
	return Message{Message: m}
}

// ParseMessage reads the message of a GitLab API error body, or returns "" if there is none.
// GitLab answers some errors with {"error":..., "error_description":...} instead.
func ParseMessage(body []byte) string {
	var b struct {
		Message          json.RawMessage `json:"message"`
		Error            string          `json:"error"`
		ErrorDescription string          `json:"error_description"`
	}
	if json.Unmarshal(body, &b) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(b.Message, &s) == nil && s != "" {
		return s
	}
	if len(b.Message) > 0 && string(b.Message) != "null" {
		// GitLab sends validation errors as an object of field messages.
		return string(b.Message)
	}
	if b.ErrorDescription != "" {
		return b.Error + ": " + b.ErrorDescription
	}
	return b.Error
}
