package main

import (
	"context"
	"fmt"
	"log/slog"
)

// goRedisLogger sends go-redis's internal messages (dial retries of the control-plane
// clients) to the structured log at debug level: the proxy logs the failures that matter
// itself, once, with their context.
type goRedisLogger struct{ log *slog.Logger }

func (l goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
