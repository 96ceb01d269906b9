package redisstore

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestGoRedisMessagesBecomeStructuredWarnings(t *testing.T) {
	var buf bytes.Buffer
	p := slogPrinter{slog.New(slog.NewJSONHandler(&buf, nil))}
	p.Printf(t.Context(), "redis: %s:%d: connection pool: failed to dial after %d attempts", "pool.go", 770, 5)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if line["level"] != "WARN" || line["msg"] != "redis client" || line["message"] != "pool.go:770: connection pool: failed to dial after 5 attempts" {
		t.Errorf("got %v", line)
	}
}
