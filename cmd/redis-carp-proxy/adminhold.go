package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/handover"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// maxHold bounds a hold's duration (a client waits at most this for its next answer when
// the VIP does not move); maxSettle bounds the wait for the clients to settle.
const (
	maxHold   = 10 * time.Second
	maxSettle = time.Second
)

// holdHandlers serves POST /handover/hold?vip=V&for=D&settle=S and POST
// /handover/release?vip=V for `redis-carp-proxy handover` on this host, and for
// `handover --undo` on a peer (the hosts of handover-peers, IP addresses) taking its VIPs
// back from this one (proxy/hold.go says what a hold does). /handover/hold answers once every client that sent a command in
// the last proxy.HoldRecent waits for an answer, or after settle, with the counts
// (handover.ParseHold reads them).
func holdHandlers(mux *http.ServeMux, srv *proxy.Server, peers []string) {
	var allowed []netip.Addr
	for _, p := range peers {
		if host, _, err := net.SplitHostPort(p); err == nil {
			if a, err := netip.ParseAddr(host); err == nil {
				allowed = append(allowed, a.Unmap())
			}
		}
	}
	endpoint := func(w http.ResponseWriter, r *http.Request) *proxy.Endpoint {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return nil
		}
		vip := r.URL.Query().Get("vip")
		ep, ok := srv.LookupEndpoint(vip)
		if !ok {
			http.Error(w, fmt.Sprintf("unknown vip %q", vip), http.StatusNotFound)
			return nil
		}
		return ep
	}
	dur := func(r *http.Request, key string, def, limit time.Duration) (time.Duration, error) {
		v := r.URL.Query().Get(key)
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > limit {
			return 0, fmt.Errorf("%s must be a duration above 0 and at most %v", key, limit)
		}
		return d, nil
	}
	mux.HandleFunc("/handover/hold", hostOrPeers(allowed, func(w http.ResponseWriter, r *http.Request) {
		ep := endpoint(w, r)
		if ep == nil {
			return
		}
		d, err := dur(r, "for", 5*time.Second, maxHold)
		settle, err2 := dur(r, "settle", 100*time.Millisecond, maxSettle)
		if err != nil || err2 != nil {
			http.Error(w, fmt.Sprint(err, err2), http.StatusBadRequest)
			return
		}
		st, err := ep.Hold(d)
		deadline := time.Now().Add(settle)
		for err == nil && st.Recent > 0 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
			st, err = ep.HoldStatus()
		}
		if err != nil {
			ep.Release()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, handover.FormatHold(handover.HoldCounts{Clients: st.Clients, Waiting: st.Waiting, Recent: st.Recent}))
	}))
	mux.HandleFunc("/handover/release", hostOrPeers(allowed, func(w http.ResponseWriter, r *http.Request) {
		if ep := endpoint(w, r); ep != nil {
			ep.Release()
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "released")
		}
	}))
}

// hostOrPeers serves h only to clients on this host (a loopback address, or the very
// address the connection reached: a TCP connection from a host's own address to itself
// never leaves it, and another host cannot complete a handshake from that address) and to
// the peers' addresses in allowed. A hold delays every client of a VIP, so it is not for
// any other host to ask.
func hostOrPeers(allowed []netip.Addr, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "unknown client address", http.StatusForbidden)
			return
		}
		from := ap.Addr().Unmap()
		ok := from.IsLoopback() || slices.Contains(allowed, from)
		if local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr); !ok && local != nil {
			if lp, lerr := netip.ParseAddrPort(local.String()); lerr == nil {
				ok = lp.Addr().Unmap() == from
			}
		}
		if !ok {
			http.Error(w, "served to this host and its handover-peers only", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}
