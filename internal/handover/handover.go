// Package handover gives this host's VIPs to another host on purpose (planned maintenance)
// and back: it checks that a peer is ready to take each VIP this host serves, demotes the
// host (carp.Demoter: net.inet.carp.demotion in freebsd mode, a keepalived track file in
// vip mode), waits until CARP has moved every such VIP (this host sees its own state go
// BACKUP, and a peer reports the VIP served), then waits until the running daemon has
// drained the VIP's clients (its gate closes the listener on BACKUP, finishes what is in
// flight and closes idle connections, so clients reconnect to the new MASTER). Every wait
// is bounded; a handover that cannot complete undoes its demotion and says why.
package handover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis-carp-proxy/redis-carp-proxy/carp"
)

// PeerStatus is what another host's proxy reports about one VIP (its admin /readyz).
type PeerStatus struct {
	// Peer names the host (its admin address).
	Peer string
	// State is its CARP state of the VIP ("BACKUP", "MASTER", "INIT"); "" when unknown.
	State string
	// Active: its listener for the VIP is open (it serves the VIP).
	Active bool
	// SlotsComplete: its slot map covers all 16384 slots (it can serve at once).
	SlotsComplete bool
	// Err: the peer could not be asked or its answer not understood.
	Err error
}

// Ready reports whether the peer can take the VIP over now: BACKUP with a complete slot
// map (its backend connections and slot map are warm, so it serves within milliseconds of
// becoming MASTER).
func (p PeerStatus) Ready() bool { return p.Err == nil && p.State == "BACKUP" && p.SlotsComplete }

// why says why the peer is not ready.
func (p PeerStatus) why() string {
	switch {
	case p.Err != nil:
		return p.Peer + ": " + p.Err.Error()
	case p.State != "BACKUP":
		return fmt.Sprintf("%s: CARP state %s, not BACKUP", p.Peer, cmp.Or(p.State, "unknown"))
	default:
		return p.Peer + ": its slot map does not cover every slot"
	}
}

// Plan is one handover of this host's VIPs.
type Plan struct {
	// VIPs are every VIP this host is configured for.
	VIPs []string
	// Own returns this host's CARP state of vip now.
	Own func(ctx context.Context, vip string) (carp.State, error)
	// Peers asks the other hosts' proxies about vip; nil: no peer is known.
	Peers func(ctx context.Context, vip string) []PeerStatus
	// Clients returns the client connections the running daemon still has on vip; nil (or
	// an error): unknown, the handover then waits Drain.
	Clients func(ctx context.Context, vip string) (int, error)
	// Hold asks the daemon at an admin address to hold a VIP's clients for a while before
	// the VIP moves away from it (proxy/hold.go: their next commands wait in their sockets
	// until the VIP has moved, so none is sent into the move): this host's daemon (Admin)
	// before a handover, the serving peer's before an undo. Release ends a hold when the
	// VIP does not move. nil: no hold, and a command a client sends as the VIP moves fails.
	Hold    func(ctx context.Context, admin, vip string, d time.Duration) (HoldCounts, error)
	Release func(ctx context.Context, admin, vip string) error
	// Admin is this host's daemon's admin address ("": none, no hold before a handover).
	Admin string
	// Serving reports whether this host's daemon serves vip (its listener is open): an undo
	// releases the peer's hold once it does. nil: once this host is MASTER.
	Serving func(ctx context.Context, vip string) bool
	// HoldFor bounds a hold: when the VIP has not moved by then, the daemon reads its
	// clients again. Default 5s.
	HoldFor time.Duration
	// Demoter gives the VIPs away (Demote) and back (Restore).
	Demoter carp.Demoter
	// Drain is the daemon's drain-timeout: after it, the daemon has closed every client.
	Drain time.Duration
	// Timeout bounds the whole handover (peer check, move, drain); default 30s.
	Timeout time.Duration
	// Poll is how often states are re-read; default 20ms.
	Poll time.Duration
	// Force skips the peer check (the handover still waits for the VIPs to move).
	Force bool
	Log   *slog.Logger
}

// Report is what a handover did.
type Report struct {
	// Moved are the VIPs this host served and handed over, Kept those it did not serve.
	Moved, Kept []string
	// TakenBy names, per moved VIP, the peer that reported it served ("" if none was asked).
	TakenBy map[string]string
	// Backup is demotion → this host BACKUP for every moved VIP.
	Backup time.Duration
	// Drained is demotion → no client left on any moved VIP (or the drain wait ended).
	Drained time.Duration
	// DrainUnknown: the daemon's clients could not be counted, so Drain was waited.
	DrainUnknown bool
	// Held are the daemon's clients, per moved VIP, when its hold settled (absent: no hold).
	Held map[string]HoldCounts
}

func (p *Plan) defaults() {
	if p.Timeout <= 0 {
		p.Timeout = 30 * time.Second
	}
	if p.Poll <= 0 {
		p.Poll = 20 * time.Millisecond
	}
	if p.HoldFor <= 0 {
		p.HoldFor = 5 * time.Second
	}
	if p.Log == nil {
		p.Log = slog.Default()
	}
}

// served returns the VIPs this host is MASTER of, and the others.
func (p *Plan) served(ctx context.Context) (served, kept []string, err error) {
	for _, v := range p.VIPs {
		s, err := p.Own(ctx, v)
		if err != nil {
			return nil, nil, fmt.Errorf("handover: CARP state of %s: %w", v, err)
		}
		if s == carp.Master {
			served = append(served, v)
		} else {
			kept = append(kept, v)
		}
	}
	return served, kept, nil
}

// CheckPeers returns nil when every VIP of vips has a peer ready to take it, else an
// error wrapping ErrNoPeer that lists, per VIP, why each peer is not ready.
func (p *Plan) CheckPeers(ctx context.Context, vips []string) error {
	if p.Peers == nil {
		return fmt.Errorf("handover: %w: no peers configured (set handover-peers to the other proxies' admin-listen addresses, or use --force)", ErrNoPeer)
	}
	var bad []string
	for _, v := range vips {
		st := p.Peers(ctx, v)
		if slices.ContainsFunc(st, PeerStatus.Ready) {
			continue
		}
		whys := make([]string, 0, len(st))
		for _, s := range st {
			whys = append(whys, s.why())
		}
		if len(whys) == 0 {
			whys = append(whys, "no peer answered")
		}
		bad = append(bad, fmt.Sprintf("%s (%s)", v, strings.Join(whys, "; ")))
	}
	if len(bad) > 0 {
		return fmt.Errorf("handover: %w for %s", ErrNoPeer, strings.Join(bad, ", "))
	}
	return nil
}

// Run hands this host's VIPs over. A host that serves no VIP is still demoted (so it
// stays BACKUP) and reports every VIP as Kept. When the VIPs do not move within the
// timeout the demotion is undone and the error wraps ErrTimeout.
func (p *Plan) Run(ctx context.Context) (*Report, error) {
	p.defaults()
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	served, kept, err := p.served(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{Moved: served, Kept: kept, TakenBy: map[string]string{}}
	if len(served) > 0 && !p.Force {
		if err := p.CheckPeers(ctx, served); err != nil {
			return nil, err
		}
	}
	held := p.hold(ctx, served, rep)
	start := time.Now()
	if err := p.Demoter.Demote(ctx); err != nil {
		p.release(ctx, held)
		return nil, fmt.Errorf("handover: demote: %w", err)
	}
	p.Log.Info("handover: host demoted", "serving", served, "not_serving", kept)
	if len(served) == 0 {
		return rep, nil
	}
	if err := p.waitMoved(ctx, served, rep); err != nil {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		p.release(rctx, held)
		if rerr := p.Demoter.Restore(rctx); rerr != nil {
			return nil, errors.Join(err, fmt.Errorf("handover: undo the demotion: %w", rerr))
		}
		return nil, fmt.Errorf("%w; the demotion is undone, this host keeps its VIPs", err)
	}
	rep.Backup = time.Since(start)
	p.Log.Info("handover: VIPs moved", "vips", served, "taken_by", rep.TakenBy, "took", rep.Backup)
	// A peer serves now: the held clients are answered and closed, and reconnect to it.
	p.release(ctx, held)
	p.waitDrained(ctx, served, rep)
	rep.Drained = time.Since(start)
	return rep, nil
}

// serves reports whether this host is MASTER of vip and its daemon serves it.
func (p *Plan) serves(ctx context.Context, vip string) bool {
	if s, err := p.Own(ctx, vip); err != nil || s != carp.Master {
		return false
	}
	return p.Serving == nil || p.Serving(ctx, vip)
}

// heldVIP is a hold made: the daemon's admin address and the VIP.
type heldVIP struct{ admin, vip string }

// hold holds this host's daemon's clients on each VIP of vips (Plan.Hold) and returns the
// holds made. A VIP that cannot be held is handed over without (logged): the hold only
// saves the commands sent as the VIP moves.
func (p *Plan) hold(ctx context.Context, vips []string, rep *Report) []heldVIP {
	if p.Hold == nil || p.Admin == "" {
		return nil
	}
	var held []heldVIP
	for _, v := range vips {
		if hc, ok := p.holdAt(ctx, p.Admin, v); ok {
			if rep.Held == nil {
				rep.Held = map[string]HoldCounts{}
			}
			rep.Held[v] = hc
			held = append(held, heldVIP{p.Admin, v})
		}
	}
	return held
}

// holdAt holds vip's clients at the daemon at admin.
func (p *Plan) holdAt(ctx context.Context, admin, vip string) (HoldCounts, bool) {
	hc, err := p.Hold(ctx, admin, vip, p.HoldFor)
	if err != nil {
		p.Log.Warn("handover: cannot hold the clients; the VIP moves without", "vip", vip, "daemon", admin, "err", err)
		return hc, false
	}
	p.Log.Info("handover: clients held", "vip", vip, "daemon", admin, "clients", hc.Clients, "waiting", hc.Waiting, "not_settled", hc.Recent)
	return hc, true
}

// release ends holds (the VIP did not move).
func (p *Plan) release(ctx context.Context, held []heldVIP) {
	for _, h := range held {
		if err := p.Release(ctx, h.admin, h.vip); err != nil {
			p.Log.Warn("handover: cannot release the hold; it ends by itself", "vip", h.vip, "daemon", h.admin, "after", p.HoldFor, "err", err)
		}
	}
}

// stateNoPeerServes: this host is BACKUP for the VIP, no peer reports it served yet.
const stateNoPeerServes = "this host BACKUP, no peer reports it served yet"

// waitMoved waits until this host is BACKUP for every VIP of vips and, when peers are
// known, one of them reports each VIP served.
func (p *Plan) waitMoved(ctx context.Context, vips []string, rep *Report) error {
	pending := slices.Clone(vips)
	states := map[string]string{}
	for {
		next := pending[:0]
		for _, v := range pending {
			s, err := p.Own(ctx, v)
			switch {
			case err != nil:
				states[v] = "unreadable: " + err.Error()
			case s != carp.Backup:
				states[v] = "this host " + s.String()
			case p.Peers != nil:
				by := ""
				for _, ps := range p.Peers(ctx, v) {
					if ps.Err == nil && ps.State == "MASTER" && ps.Active {
						by = ps.Peer
						break
					}
				}
				if by == "" {
					states[v] = stateNoPeerServes
					break
				}
				rep.TakenBy[v] = by
				continue
			default:
				rep.TakenBy[v] = ""
				continue
			}
			next = append(next, v)
		}
		pending = next
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if !slices.ContainsFunc(pending, func(v string) bool { return states[v] != stateNoPeerServes }) {
				// This host let every VIP go; only the peers' confirmation is missing (their
				// admin listeners stopped answering?). Undoing now would take the VIPs back
				// from whoever serves them.
				p.Log.Warn("handover: this host is BACKUP, but no peer confirmed serving", "vips", pending)
				for _, v := range pending {
					rep.TakenBy[v] = ""
				}
				return nil
			}
			var why []string
			for _, v := range pending {
				why = append(why, v+": "+states[v])
			}
			return fmt.Errorf("handover: %w (%s): no backup took over; is net.inet.carp.preempt=1 (keepalived: preempt) on the peers?",
				ErrTimeout, strings.Join(why, ", "))
		case <-time.After(p.Poll):
		}
	}
}

// waitDrained waits until the daemon has no client left on any VIP of vips, at most until
// the handover's deadline; without a client count it waits the daemon's drain-timeout.
func (p *Plan) waitDrained(ctx context.Context, vips []string, rep *Report) {
	if p.Clients == nil {
		rep.DrainUnknown = true
		select {
		case <-ctx.Done():
		case <-time.After(p.Drain):
		}
		return
	}
	for {
		left := 0
		for _, v := range vips {
			n, err := p.Clients(ctx, v)
			if err != nil {
				p.Log.Warn("handover: cannot count the daemon's clients; waiting drain-timeout", "err", err, "drain", p.Drain)
				p.Clients = nil
				p.waitDrained(ctx, vips, rep)
				return
			}
			left += n
		}
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			p.Log.Warn("handover: clients still open at the deadline", "clients", left)
			return
		case <-time.After(p.Poll):
		}
	}
}

// Undo gives the VIPs back: it removes the handover's demotion (CARP then returns each VIP
// whose preferred host this is, with net.inet.carp.preempt=1). When it can (Hold, Peers and
// Own set), it first holds the clients of the peer serving each VIP, as a handover holds
// this host's, and releases them once this host serves the VIP again (or after HoldFor,
// when it does not: this host is not the preferred one).
func (p *Plan) Undo(ctx context.Context) error {
	p.defaults()
	var held []heldVIP
	if p.Hold != nil && p.Peers != nil && p.Own != nil {
		for _, v := range p.VIPs {
			for _, ps := range p.Peers(ctx, v) {
				if ps.Err == nil && ps.State == "MASTER" && ps.Active {
					if _, ok := p.holdAt(ctx, ps.Peer, v); ok {
						held = append(held, heldVIP{ps.Peer, v})
					}
					break
				}
			}
		}
	}
	if err := p.Demoter.Restore(ctx); err != nil {
		p.release(context.WithoutCancel(ctx), held)
		return fmt.Errorf("handover: undo: %w", err)
	}
	p.Log.Info("handover undone: this host may take its VIPs back")
	if len(held) == 0 {
		return nil
	}
	// The peers' clients are released once this host serves each VIP (they then reconnect
	// to it), or when it does not within HoldFor (they are read again where they are).
	wctx, cancel := context.WithTimeout(ctx, p.HoldFor)
	defer cancel()
	missed := 0
	for _, h := range held {
		for !p.serves(wctx, h.vip) {
			select {
			case <-wctx.Done():
			case <-time.After(p.Poll / 4):
				continue
			}
			missed++
			break
		}
	}
	if missed > 0 {
		p.Log.Warn("handover undo: this host does not serve every VIP; the peers' holds are released", "vips", missed)
	}
	p.release(context.WithoutCancel(ctx), held)
	return nil
}
