package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// LogTo sends go-redis's own messages (a pool that cannot dial, a Sentinel switching masters) to
// log as warnings, so that they are lines of the bridge's structured log like every other,
// instead of unstructured text on stderr. go-redis has one logger per process.
func LogTo(log *slog.Logger) {
	redis.SetLogger(slogPrinter{log})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.WarnContext(ctx, "redis client", "message", strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}
