package proxy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
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

// SetHostState installs the function that reports the host state of endpoints that have
// none of their own (Endpoint.SetHostState): a single-VIP daemon, tests. Without one, the
// proxy reports static and active. It may be called at any time; f must be safe for
// concurrent use and fast.
func (s *Server) SetHostState(f func() HostState) {
	if f == nil {
		s.hostState.Store(nil)
		return
	}
	s.hostState.Store(&f)
}

// serverHostState is the state set with SetHostState, else static.
func (s *Server) serverHostState() HostState {
	if f := s.hostState.Load(); f != nil {
		return (*f)()
	}
	return staticHostState
}

// HostState returns the host state over every VIP: active while any VIP is served; the
// CARP state is the one state all VIPs share, else each VIP's state in endpoint order,
// comma-separated ("MASTER,BACKUP,BACKUP").
func (s *Server) HostState() HostState {
	eps := s.Endpoints()
	if len(eps) == 0 {
		return s.serverHostState()
	}
	var hs HostState
	states := make([]string, len(eps))
	same := true
	for i, e := range eps {
		h := e.HostState()
		states[i] = h.CARP
		same = same && h.CARP == states[0]
		hs.Active = hs.Active || h.Active
	}
	hs.CARP = states[0]
	if !same {
		hs.CARP = strings.Join(states, ",")
	}
	return hs
}

// Ready reports whether this proxy should receive traffic: a VIP is served (with one VIP:
// it is) and the cluster's slot map covers all 16384 slots. The reason names both, so a
// standby proxy's answer also tells whether it is warm: "not active (CARP state BACKUP),
// slot map epoch 3 covers all 16384 slots (3 masters)". With several VIPs the reason has
// one such line per VIP, prefixed with the VIP and ": ".
func (s *Server) Ready() (bool, string) {
	eps := s.Endpoints()
	if len(eps) <= 1 {
		return s.ready(s.HostState())
	}
	ok := false
	lines := make([]string, len(eps))
	for i, e := range eps {
		eok, why := e.Ready()
		ok = ok || eok
		lines[i] = e.vip + ": " + why
	}
	return ok, strings.Join(lines, "\n")
}

// Ready reports whether this VIP should receive traffic: it is served and the slot map is
// complete; the reason is worded as Server.Ready's.
func (e *Endpoint) Ready() (bool, string) { return e.s.ready(e.HostState()) }

func (s *Server) ready(hs HostState) (bool, string) {
	state := fmt.Sprintf("active (CARP state %s)", hs.CARP)
	if !hs.Active {
		state = "not " + state
	}
	m := s.cl.smap.Load()
	if m == nil {
		return false, state + ", no slot map loaded: cluster not reachable yet"
	}
	if n := s.cl.covered.Load(); n != command.NumSlots {
		return false, fmt.Sprintf("%s, slot map incomplete: the cluster serves %d of %d slots (last complete map: epoch %d)", state, n, command.NumSlots, m.epoch)
	}
	return hs.Active, fmt.Sprintf("%s, slot map epoch %d covers all %d slots (%d masters)", state, m.epoch, command.NumSlots, len(m.masters))
}

// ClusterHealthy returns nil while the proxy can serve: its slot map covers every slot and
// was confirmed by a refresh recently (within three refresh intervals plus the backend
// timeouts). It asks no node: the slot map refresher already does, all the time. The
// daemon's CARP demotion (carp-demote) uses it.
func (s *Server) ClusterHealthy() error {
	m := s.cl.smap.Load()
	if m == nil {
		return errors.New("proxy: no slot map loaded: cluster not reachable yet")
	}
	if n := s.cl.covered.Load(); n != command.NumSlots {
		return fmt.Errorf("proxy: the cluster serves %d of %d slots", n, command.NumSlots)
	}
	cfg := s.conf()
	stale := 3*cfg.SlotmapRefresh + cfg.BackendConnectTimeout + cfg.BackendReadTimeout
	if age := time.Since(m.loaded); age > stale {
		return fmt.Errorf("proxy: slot map not confirmed for %v: no cluster node answers CLUSTER SLOTS", age.Round(time.Millisecond))
	}
	return nil
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
	// Every VIP: its CARP state, whether it is served, its clients.
	if eps := s.Endpoints(); len(eps) > 0 {
		fmt.Fprintf(&b, "vips:%d\r\n", len(eps))
		for i, e := range eps {
			h := e.HostState()
			a := 0
			if h.Active {
				a = 1
			}
			fmt.Fprintf(&b, "vip%d:addr=%s,carp_state=%s,active=%d,clients=%d\r\n", i, e.vip, h.CARP, a, e.Clients())
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
