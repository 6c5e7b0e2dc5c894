package proxy

import (
	"fmt"
	"strings"
	"time"
)

// HostState is what the daemon knows about this host's role: the CARP state and whether
// the client listener is open. The proxy reports it in INFO and uses it for Ready.
type HostState struct {
	// CARP is the CARP state ("MASTER", "BACKUP", "INIT"), or "static" when the proxy
	// serves without following CARP.
	CARP string
	// Active is true while the client listener is open.
	Active bool
}

// staticHostState is the state of a proxy that always serves.
var staticHostState = HostState{CARP: "static", Active: true}

// SetHostState installs the function that reports the host state (the daemon sets it from
// the CARP watcher and the gate). Without one, the proxy reports static and active. It may
// be called at any time; f must be safe for concurrent use and fast.
func (s *Server) SetHostState(f func() HostState) {
	if f == nil {
		s.hostState.Store(nil)
		return
	}
	s.hostState.Store(&f)
}

// HostState returns the current host state.
func (s *Server) HostState() HostState {
	if f := s.hostState.Load(); f != nil {
		return (*f)()
	}
	return staticHostState
}

// Ready reports whether this proxy should receive traffic: it is active and the cluster's
// slot map covers all 16384 slots. The reason names both, so a standby proxy's answer
// also tells whether it is warm: "not active (CARP state BACKUP), slot map epoch 3 covers
// all 16384 slots (3 masters)".
func (s *Server) Ready() (bool, string) {
	hs := s.HostState()
	state := fmt.Sprintf("active (CARP state %s)", hs.CARP)
	if !hs.Active {
		state = "not " + state
	}
	m := s.cl.smap.Load()
	if m == nil {
		return false, state + ", no slot map loaded: cluster not reachable yet"
	}
	if n := s.cl.covered.Load(); n != NumSlots {
		return false, fmt.Sprintf("%s, slot map incomplete: the cluster serves %d of %d slots (last complete map: epoch %d)", state, n, NumSlots, m.epoch)
	}
	return hs.Active, fmt.Sprintf("%s, slot map epoch %d covers all %d slots (%d masters)", state, m.epoch, NumSlots, len(m.masters))
}

// proxyInfo renders the proxy section of INFO: version, uptime, CARP state and active
// flag, the slot map, and every known cluster node with its state.
func (s *Server) proxyInfo() string {
	var b strings.Builder
	hs := s.HostState()
	active := 0
	if hs.Active {
		active = 1
	}
	b.WriteString("# Proxy\r\n")
	fmt.Fprintf(&b, "proxy_version:%s\r\nuptime_in_seconds:%d\r\ncarp_state:%s\r\nactive:%d\r\n",
		Version, int(time.Since(s.started).Seconds()), hs.CARP, active)
	if s.StateInfo != nil {
		for _, kv := range s.StateInfo() {
			fmt.Fprintf(&b, "%s:%s\r\n", kv[0], kv[1])
		}
	}
	m := s.cl.smap.Load()
	if m == nil {
		fmt.Fprintf(&b, "slotmap_epoch:0\r\nslots_covered:%d\r\n", s.cl.covered.Load())
	} else {
		fmt.Fprintf(&b, "slotmap_epoch:%d\r\nslots_covered:%d\r\nslotmap_age_seconds:%.1f\r\nmasters:%d\r\n",
			m.epoch, s.cl.covered.Load(), time.Since(m.loaded).Seconds(), len(m.masters))
		slots := make([]int, len(m.masters))
		for _, o := range m.owner {
			slots[o]++
		}
		i := 0
		for mi, n := range m.masters {
			fmt.Fprintf(&b, "node%d:addr=%s,role=master,state=%s,slots=%d,pending=%d\r\n", i, n.addr, n.state(), slots[mi], n.pending())
			i++
			for _, r := range m.replicas[mi] {
				fmt.Fprintf(&b, "node%d:addr=%s,role=replica,master=%s,state=%s,pending=%d\r\n", i, r.addr, n.addr, r.state(), r.pending())
				i++
			}
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// state is "up", or "down" while the node cannot be reached.
func (n *node) state() string {
	if n.down.Load() {
		return "down"
	}
	return "up"
}
