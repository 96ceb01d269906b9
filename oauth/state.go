package oauth

import (
	"strconv"
	"strings"
	"time"
)

// newUpstreamState is the bridge's state at GitLab: 256 random bits, which alone find the parked
// request, then, for diagnosis only, the sign-in's trace id and when it started, and a tag that
// proves the bridge wrote them. A state that comes back after its request is gone still names
// its sign-in, and says whether it came too late or a second time.
func (s *Server) newUpstreamState(traceID string, now time.Time) string {
	body := randomToken() + "." + traceID + "." + strconv.FormatInt(now.Unix(), 36)
	return body + "." + s.cfg.Sealer.Tag(stateTagContext+body)
}

// stateTagContext keeps a state's tag from serving as any other tag of the same key.
const stateTagContext = "upstream state:"

// readUpstreamState returns the trace id and start of a state newUpstreamState made (the trace
// id is empty for a dry run's); ok is false for any other (altered, forged, or from a bridge with
// other keys).
func (s *Server) readUpstreamState(state string) (traceID string, started time.Time, ok bool) {
	i := strings.LastIndexByte(state, '.')
	if i < 0 || !s.cfg.Sealer.CheckTag(stateTagContext+state[:i], state[i+1:]) {
		return "", time.Time{}, false
	}
	parts := strings.Split(state[:i], ".")
	if len(parts) != 3 {
		return "", time.Time{}, false
	}
	unix, err := strconv.ParseInt(parts[2], 36, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return parts[1], time.Unix(unix, 0), true
}
