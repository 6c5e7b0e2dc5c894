package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// The command table comes from a node's COMMAND reply, with the subcommands of container
// commands (Redis 7), merged over the built-in table. It is loaded when the cluster first
// answers: at Start, or, when the cluster is not reachable then, by a goroutine that waits
// for it however long that takes. Until then the built-in table is used; read-only users
// are refused what it does not mark read-only (readonly.go), so a late table fails closed.

// loadCommandTable merges the COMMAND reply of one master over the built-in table; it
// reports whether a master answered.
func (s *Server) loadCommandTable(ctx context.Context) bool {
	m := s.cl.smap.Load()
	if m == nil {
		return false
	}
	for _, n := range m.masters {
		cctx, cancel := context.WithTimeout(ctx, s.conf().BackendConnectTimeout+s.conf().BackendReadTimeout)
		cl := s.cl.controlClient(n.addr)
		v, err := cl.Do(cctx, "COMMAND").Slice()
		cl.Close()
		cancel()
		var specs []command.Spec
		if err == nil {
			specs, err = parseCommandReply(v)
		}
		if err != nil {
			s.log.Warn("COMMAND failed; trying another node", "node", n.addr, "err", err)
			continue
		}
		t := command.Builtin()
		t.Merge(specs)
		s.cl.cmds.Store(t)
		ft := buildFastTable(t)
		s.fast.Store(&ft)
		s.log.Info("command table loaded", "node", n.addr, "commands", len(t.Cmds), "subcommands", len(t.Sub))
		return true
	}
	s.log.Warn("no node answered COMMAND; using the built-in command table")
	return false
}

// loadCommandTableLater waits for the cluster and loads the command table, retrying every
// slotmap-refresh-interval until a node answers or the server closes.
func (s *Server) loadCommandTableLater() {
	for {
		if err := s.cl.waitForMap(s.ctx); err != nil {
			return
		}
		if s.loadCommandTable(s.ctx) {
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(s.conf().SlotmapRefresh):
		}
	}
}

// parseCommandReply reads a COMMAND reply (RESP2, as go-redis returns it): per command
// its name, arity, flags, first key, last key, step, and from Redis 7 on, at index 9, its
// subcommands in the same form.
func parseCommandReply(v []any) ([]command.Spec, error) {
	out := make([]command.Spec, 0, len(v))
	for _, e := range v {
		cs, err := parseCommandEntry(e)
		if err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	return out, nil
}

func parseCommandEntry(e any) (command.Spec, error) {
	a, ok := e.([]any)
	if !ok || len(a) < 6 {
		return command.Spec{}, fmt.Errorf("COMMAND: unexpected entry %v", e)
	}
	name, ok1 := a[0].(string)
	arity, ok2 := a[1].(int64)
	flags, ok3 := a[2].([]any)
	first, ok4 := a[3].(int64)
	last, ok5 := a[4].(int64)
	step, ok6 := a[5].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return command.Spec{}, fmt.Errorf("COMMAND: unexpected entry %v", e)
	}
	cs := command.Spec{Name: name, Arity: int(arity), FirstKey: int(first), LastKey: int(last), Step: int(step)}
	for _, f := range flags {
		if s, ok := f.(string); ok {
			cs.Flags = append(cs.Flags, strings.ToLower(s))
		}
	}
	if len(a) > 9 {
		if subs, ok := a[9].([]any); ok {
			for _, se := range subs {
				sc, err := parseCommandEntry(se)
				if err != nil {
					return command.Spec{}, err
				}
				cs.Subcommands = append(cs.Subcommands, sc)
			}
		}
	}
	return cs, nil
}
