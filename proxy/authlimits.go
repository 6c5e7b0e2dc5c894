package proxy

// Before a client has authenticated (with requirepass or users set), the request limits
// are Redis's unauthenticated ones, not the configured ones: a connection that has proved
// nothing may send at most unauthenticated-max-multibulk-len arguments of at most
// unauthenticated-max-bulk-len bytes each (10 and 16 KiB by default), so it can make the
// proxy hold a few hundred KiB, not a 1 GB command. The limits are checked as bytes are
// read (scanner), so they apply to what is read before the AUTH reply is known: a client
// that pipelines a large command right behind its AUTH gets the unauthenticated limit for
// the part read together with the AUTH (clients wait for the AUTH reply first).

// setLimits sets the request limits of a client's scanner from cfg, the unauthenticated ones
// while authed is false.
func (g *scanner) setLimits(cfg *Config, authed bool) {
	g.maxBulk, g.maxArgs, g.maxInline, g.maxQuery = cfg.ProtoMaxBulkLen, int64(cfg.ProtoMaxMultibulkLen), cfg.ProtoInlineMaxSize, cfg.QueryBufferLimit
	g.unauth = !authed
	if authed {
		return
	}
	g.maxBulk = min(g.maxBulk, cfg.UnauthenticatedMaxBulkLen)
	g.maxArgs = min(g.maxArgs, int64(cfg.UnauthenticatedMaxMultibulkLen))
	g.maxInline = min(g.maxInline, int(cfg.UnauthenticatedMaxBulkLen))
	// The whole command: every argument at its limit with its header.
	g.maxQuery = min(g.maxQuery, g.maxArgs*(g.maxBulk+32)+32)
}
