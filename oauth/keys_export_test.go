package oauth

import "time"

// SetKeyClock makes s read the time from now to pick its signing key, date its ID tokens and
// time its key reloads, so that tests reach a rotation's switch-over without waiting for it.
// Set it before s serves a request.
func SetKeyClock(s *Server, now func() time.Time) { s.keys.now = now }

// KeyReload is how long an instance may serve the key set it loaded before rereading it.
const KeyReload = keyReload
