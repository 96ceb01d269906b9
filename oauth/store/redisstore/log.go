package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// LogTo sends go-redis's own messages (a pool that cannot dial, a Sentinel switching masters) to
// log as warnings, so that they are lines of the bridge's structured log like every other,
// instead of unstructured text on stderr, and the store's own warnings with them. go-redis has
// one logger per process.
func LogTo(log *slog.Logger) {
	redis.SetLogger(slogPrinter{log})
	logger.Store(log)
}

// logger takes the store's warnings: what it could not do that its caller need not fail for.
var logger atomic.Pointer[slog.Logger]

func warn(ctx context.Context, msg string, args ...any) {
	log := logger.Load()
	if log == nil {
		log = slog.Default()
	}
	log.WarnContext(ctx, msg, args...)
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(ctx context.Context, format string, v ...any) {
	p.log.WarnContext(ctx, "redis client", "message", strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}
