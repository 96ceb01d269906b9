package storetest

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Format1 is a Redis store as the bridge of format version 1 left it (see
// redisstore/testdata/format1.json): the keys, and the raw values of the codes, tokens, states and
// client secrets behind them, by name.
type Format1 struct {
	Values map[string]string
	Keys   int
}

// dumpedKey is a key as the fixture holds it.
type dumpedKey struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	PTTL  int64  `json:"pttl_ms"`
	Value string `json:"value"`
	// ValueBase64 holds a value that is not UTF-8 (a sealed key set), which JSON cannot.
	ValueBase64 string            `json:"value_base64"`
	Fields      map[string]string `json:"fields"`
	Members     []string          `json:"members"`
	Scores      []float64         `json:"scores"`
	Items       []string          `json:"items"`
}

// timestamp is an RFC 3339 time as Go's JSON writes it.
var timestamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)

// LoadFormat1 writes the fixture at path into Redis through c, every key with the TTL it had left,
// and every time in it (RFC 3339 in values, Unix milliseconds as scores) moved by the time passed
// since it was captured, so that the store is as if format version 1 had written it just now.
func LoadFormat1(t testing.TB, c redis.UniversalClient, path string) Format1 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CapturedAt time.Time         `json:"captured_at"`
		Values     map[string]string `json:"values"`
		Keys       []dumpedKey       `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	shift := time.Since(doc.CapturedAt)
	move := func(s string) string {
		return timestamp.ReplaceAllStringFunc(s, func(v string) string {
			at, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return v
			}
			return at.Add(shift).UTC().Format(time.RFC3339Nano)
		})
	}
	ctx := t.Context()
	for _, k := range doc.Keys {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			switch k.Type {
			case "string":
				if k.ValueBase64 != "" {
					raw, err := base64.StdEncoding.DecodeString(k.ValueBase64)
					if err != nil {
						return err
					}
					p.Set(ctx, k.Key, raw, 0)
					break
				}
				p.Set(ctx, k.Key, move(k.Value), 0)
			case "hash":
				for f, v := range k.Fields {
					p.HSet(ctx, k.Key, f, move(v))
				}
			case "set":
				for _, m := range k.Members {
					p.SAdd(ctx, k.Key, m)
				}
			case "zset":
				for i, m := range k.Members {
					p.ZAdd(ctx, k.Key, redis.Z{Member: m, Score: k.Scores[i] + float64(shift.Milliseconds())})
				}
			case "list":
				for _, item := range k.Items {
					p.RPush(ctx, k.Key, move(item))
				}
			}
			if k.PTTL > 0 {
				p.PExpire(ctx, k.Key, time.Duration(k.PTTL)*time.Millisecond)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("loading %s: %v", k.Key, err)
		}
	}
	return Format1{Values: doc.Values, Keys: len(doc.Keys)}
}
