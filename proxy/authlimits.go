package proxy

import "github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

// Before a client has authenticated (with requirepass or users set), the request limits
// are Redis's unauthenticated ones, not the configured ones: a connection that has proved
// nothing may send at most unauthenticated-max-multibulk-len arguments of at most
// unauthenticated-max-bulk-len bytes each (10 and 16 KiB by default), so it can make the
// proxy hold a few hundred KiB, not a 1 GB command. The limits are checked as bytes are
// read (scanner), so they apply to what is read before the AUTH reply is known: a client
// that pipelines a large command right behind its AUTH gets the unauthenticated limit for
// the part read together with the AUTH (clients wait for the AUTH reply first).

// requestLimits returns a client's request limits from cfg, the unauthenticated ones while
// authed is false.
func requestLimits(cfg *Config, authed bool) resp.Limits {
	l := resp.Limits{MaxBulk: cfg.ProtoMaxBulkLen, MaxArgs: int64(cfg.ProtoMaxMultibulkLen),
		MaxInline: cfg.ProtoInlineMaxSize, MaxQuery: cfg.QueryBufferLimit}
	if authed {
		return l
	}
	l.Unauthenticated = true
	l.MaxBulk = min(l.MaxBulk, cfg.UnauthenticatedMaxBulkLen)
	l.MaxArgs = min(l.MaxArgs, int64(cfg.UnauthenticatedMaxMultibulkLen))
	l.MaxInline = min(l.MaxInline, int(cfg.UnauthenticatedMaxBulkLen))
	// The whole command: every argument at its limit with its header.
	l.MaxQuery = min(l.MaxQuery, l.MaxArgs*(l.MaxBulk+32)+32)
	return l
}
