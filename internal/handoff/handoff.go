package handoff

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Source is the running (old) process: its listeners and its clients.
type Source interface {
	// Listeners returns the listening sockets (duplicates, which Give closes once sent).
	Listeners() ([]ListenerInfo, []int, error)
	// StopAccepting stops accepting on the listeners of these indexes: the successor
	// accepts on them now (the socket, with its one accept queue, stays open there).
	StopAccepting(adopted []int)
	// ResumeAccepting opens the listeners again after a failed hand-over.
	ResumeAccepting()
	// TakeIdle detaches up to max clients at a request boundary (nothing in flight, nothing
	// buffered unparsed, no state that cannot move) and returns their state and
	// descriptors; Give closes those once sent, or gives them back with Return.
	TakeIdle(max int) ([]Client, []int)
	// Return serves clients again that could not be sent.
	Return(cs []Client, fds []int)
	// Remaining is the number of clients still served here.
	Remaining() int
}

// Sink is the new process.
type Sink interface {
	// OfferListeners hands over the listening sockets (their descriptors are the
	// sink's) and returns, once it accepts on them, the indexes it adopted.
	OfferListeners(ls []ListenerInfo, fds []int) []int
	// AdoptClient serves a client from now on; on error the caller closes fd.
	AdoptClient(c Client, fd int) error
	// Room is how many more descriptors the process can take now.
	Room() int
}

// Options tune a hand-over.
type Options struct {
	Version string // this binary's version (Hello)
	// Instance names this process's configuration; a peer of another is refused.
	Instance string
	Drain    time.Duration // the old process passes clients for at most this long
	// Step is how long the old process waits for a client to become idle before it
	// answers a credit with an empty batch (default 5 ms).
	Step time.Duration
	// HelloTimeout bounds each step that waits for the peer (default 30 s; a successor
	// in CARP BACKUP answers Accepting only when its listeners open or it gives up).
	HelloTimeout time.Duration
	Log          *slog.Logger
	proto        int // tests: speak another client-state version
}

func (o *Options) defaults() {
	if o.Step <= 0 {
		o.Step = 5 * time.Millisecond
	}
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.proto == 0 {
		o.proto = Proto
		if n, err := strconv.Atoi(protoOverride); err == nil && n > 0 {
			o.proto = n
		}
	}
}

// protoOverride, set at build time (-ldflags -X ...handoff.protoOverride=N), makes a
// binary speak client-state version N: the test of the listener-only fallback runs a
// real binary of another version.
var protoOverride string

// Result summarises a hand-over.
type Result struct {
	Listeners    int  // listeners the successor accepts on
	Passed       int  // clients passed
	Kept         int  // clients left with the old process (state that cannot move, or time out)
	ListenerOnly bool // the peer speaks another client-state version
	Peer         Hello
}

func (c *Conn) hello(o *Options) (Hello, error) {
	if err := c.Send(MsgHello, Hello{Proto: o.proto, Version: o.Version, PID: os.Getpid(), Instance: o.Instance}, nil); err != nil {
		return Hello{}, err
	}
	var h Hello
	if err := c.expect(MsgHello, &h); err != nil {
		return Hello{}, err
	}
	if h.Instance != o.Instance {
		return h, fmt.Errorf("%w: %q, this is %q", ErrOtherInst, h.Instance, o.Instance)
	}
	return h, nil
}

// expect receives a message of type t (descriptors not expected) into v.
func (c *Conn) expect(t MsgType, v any) error {
	m, err := c.Recv()
	if err != nil {
		return err
	}
	if m.Type != t || len(m.FDs) > 0 {
		m.CloseFDs()
		return fmt.Errorf("%w: message %d, want %d", ErrBadFrame, m.Type, t)
	}
	return m.Decode(v)
}

// Give runs the old process's side on conn: listeners first, then each client as it
// becomes idle, until none is left or o.Drain has passed (ctx ending stops it too). A
// failure before the successor accepts leaves this process serving as before; one after
// it re-opens the listeners (ResumeAccepting).
func Give(ctx context.Context, c *Conn, src Source, o Options) (Result, error) {
	o.defaults()
	var res Result
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	c.SetDeadline(time.Now().Add(o.HelloTimeout))
	peer, err := c.hello(&o)
	if err != nil {
		return res, err
	}
	res.Peer = peer
	infos, fds, err := src.Listeners()
	if err != nil {
		return res, err
	}
	if len(fds) > MaxFDsPerMsg {
		closeAll(fds)
		return res, fmt.Errorf("%w: %d listeners", ErrTooMany, len(fds))
	}
	err = c.Send(MsgListeners, Listeners{Listeners: infos}, fds)
	closeAll(fds)
	if err != nil {
		return res, err
	}
	var acc Accepting
	if err := c.expect(MsgAccepting, &acc); err != nil {
		return res, err
	}
	res.Listeners = len(acc.Adopted)
	if len(acc.Adopted) > 0 {
		src.StopAccepting(acc.Adopted)
	}
	o.Log.Info("handoff: the successor accepts on the listeners", "adopted", len(acc.Adopted),
		"of", len(infos), "peer_version", peer.Version, "peer_pid", peer.PID)
	if peer.Proto != o.proto {
		res.ListenerOnly = true
		res.Kept = src.Remaining()
		o.Log.Warn("handoff: the successor speaks another client-state version: listeners only; clients are drained",
			"proto", o.proto, "peer_proto", peer.Proto)
		c.SetDeadline(time.Now().Add(o.HelloTimeout))
		err := c.Send(MsgDone, Done{Kept: res.Kept, Reason: "incompatible client-state version"}, nil)
		return res, err
	}
	deadline := time.Now().Add(o.Drain)
	for {
		c.SetDeadline(time.Now().Add(o.HelloTimeout))
		var cr Credit
		if err := c.expect(MsgCredit, &cr); err != nil {
			if len(acc.Adopted) > 0 {
				src.ResumeAccepting()
			}
			return res, err
		}
		if src.Remaining() == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			res.Kept = src.Remaining()
			err := c.Send(MsgDone, Done{Passed: res.Passed, Kept: res.Kept}, nil)
			return res, err
		}
		var cs []Client
		var cfds []int
		if n := min(cr.N, MaxFDsPerMsg); n > 0 {
			// Wait a little for clients to become idle rather than spin.
			for until := time.Now().Add(o.Step); ; {
				cs, cfds = src.TakeIdle(n)
				if len(cs) > 0 || !time.Now().Before(until) || src.Remaining() == 0 {
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
		} else {
			time.Sleep(o.Step)
		}
		if err := c.Send(MsgClients, Clients{Clients: cs}, cfds); err != nil {
			src.Return(cs, cfds)
			if len(acc.Adopted) > 0 {
				src.ResumeAccepting()
			}
			return res, err
		}
		closeAll(cfds)
		res.Passed += len(cs)
	}
}

// Take runs the new process's side on conn: it receives the listeners, offers them to
// sink, then adopts clients until the old process is done.
func Take(ctx context.Context, c *Conn, sink Sink, o Options) (Result, error) {
	o.defaults()
	var res Result
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	c.SetDeadline(time.Now().Add(o.HelloTimeout))
	peer, err := c.hello(&o)
	if err != nil {
		return res, err
	}
	res.Peer = peer
	m, err := c.Recv()
	if err != nil {
		return res, err
	}
	if m.Type != MsgListeners {
		m.CloseFDs()
		return res, fmt.Errorf("%w: message %d, want listeners", ErrBadFrame, m.Type)
	}
	var ls Listeners
	if err := m.Decode(&ls); err != nil || len(ls.Listeners) != len(m.FDs) {
		m.CloseFDs()
		return res, fmt.Errorf("%w: listeners do not match their descriptors", ErrBadFrame)
	}
	c.SetDeadline(time.Time{})
	adopted := sink.OfferListeners(ls.Listeners, m.FDs)
	res.Listeners = len(adopted)
	c.SetDeadline(time.Now().Add(o.HelloTimeout))
	if err := c.Send(MsgAccepting, Accepting{Adopted: adopted}, nil); err != nil {
		return res, err
	}
	if peer.Proto != o.proto {
		res.ListenerOnly = true
		var d Done
		err := c.expect(MsgDone, &d)
		res.Kept = d.Kept
		return res, err
	}
	for {
		c.SetDeadline(time.Now().Add(o.HelloTimeout))
		n := min(sink.Room(), MaxFDsPerMsg)
		if err := c.Send(MsgCredit, Credit{N: n}, nil); err != nil {
			return res, err
		}
		m, err := c.Recv()
		if err != nil {
			return res, err
		}
		switch m.Type {
		case MsgDone:
			m.CloseFDs()
			var d Done
			if err := m.Decode(&d); err != nil {
				return res, err
			}
			res.Kept = d.Kept
			return res, nil
		case MsgClients:
			var cs Clients
			if err := m.Decode(&cs); err != nil || len(cs.Clients) != len(m.FDs) {
				m.CloseFDs()
				return res, fmt.Errorf("%w: clients do not match their descriptors", ErrBadFrame)
			}
			if len(m.FDs) > n {
				m.CloseFDs()
				return res, fmt.Errorf("%w: %d clients for a credit of %d", ErrTooMany, len(m.FDs), n)
			}
			for i, fd := range m.FDs {
				if err := sink.AdoptClient(cs.Clients[i], fd); err != nil {
					unix.Close(fd)
					o.Log.Warn("handoff: client not adopted; closed", "err", err)
					continue
				}
				res.Passed++
			}
		default:
			m.CloseFDs()
			return res, fmt.Errorf("%w: message %d during the client hand-over", ErrBadFrame, m.Type)
		}
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
