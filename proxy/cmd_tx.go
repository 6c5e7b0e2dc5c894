package proxy

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// txState is a client's MULTI/WATCH state. It is changed by the reader goroutine and by
// exec functions of barrier requests, which run while the reader waits, so the two never
// touch it at the same time.
type txState struct {
	inMulti bool
	queued  [][][]byte
	slot    int  // slot of the keys so far, -1 when none
	aborted bool // an error while queuing: EXEC answers EXECABORT

	watchNode *node
	watchConn *privConn // the private connection the WATCH holds (private.go)
}

var (
	replyExecAbort = []byte("-EXECABORT Transaction discarded because of previous errors.\r\n")
	errCrossSlot   = []byte("-CROSSSLOT Keys in request don't hash to the same slot\r\n")
)

// queueInMulti queues a command while a transaction is open and reports whether it did.
func (ss *session) queueInMulti(r *request) bool {
	tx := &ss.tx
	if !tx.inMulti {
		return false
	}
	switch lowerName(r.args[0]) {
	case "exec", "discard", "multi", "watch", "quit", "reset":
		return false
	}
	r.local = true
	r.done = closedDone()
	info := ss.s.cl.cmds.Load().Lookup(r.args[0])
	if info == nil {
		tx.aborted = true
		var b strings.Builder
		for _, a := range r.args[1:] {
			if b.Len() > 128 {
				break
			}
			fmt.Fprintf(&b, "'%s' ", a)
		}
		r.reply = resp.ErrorReply(fmt.Sprintf("ERR unknown command '%s', with args beginning with: %s", r.args[0], b.String()))
		return true
	}
	if info.Flags&command.NoMulti != 0 || trackingSubcommand(r.args) {
		tx.aborted = true
		r.reply = resp.ErrorReply("ERR Command not allowed inside a transaction")
		return true
	}
	if argc := len(r.args); info.Arity > 0 && argc != info.Arity || argc < -info.Arity {
		tx.aborted = true
		r.reply = wrongArgs(info.Name)
		return true
	}
	var keyIdx [16]int
	idx, ok := info.KeyIndexes(r.args, keyIdx[:])
	if ok {
		for _, i := range idx {
			s := command.KeySlot(r.args[i])
			if tx.slot < 0 {
				tx.slot = s
			} else if s != tx.slot {
				tx.aborted = true
				r.reply = errCrossSlot
				return true
			}
		}
	}
	args := make([][]byte, len(r.args))
	copy(args, r.args)
	tx.queued = append(tx.queued, args)
	r.reply = replyQueued
	return true
}

func txMulti(ss *session, r *request) bool {
	return localHandler(func(ss *session, r *request) []byte {
		if ss.tx.inMulti {
			return resp.ErrorReply("ERR MULTI calls can not be nested")
		}
		ss.tx.inMulti, ss.tx.queued, ss.tx.aborted = true, nil, false
		if ss.tx.watchConn == nil {
			ss.tx.slot = -1
		}
		return replyOK
	})(ss, r)
}

func txDiscard(ss *session, r *request) bool {
	if !ss.tx.inMulti {
		return localHandler(func(*session, *request) []byte { return resp.ErrorReply("ERR DISCARD without MULTI") })(ss, r)
	}
	ss.tx.inMulti, ss.tx.queued = false, nil
	return execHandler(func(ss *session, r *request) []byte {
		ss.releaseWatch(true)
		return replyOK
	})(ss, r)
}

func txUnwatch(ss *session, r *request) bool {
	return execHandler(func(ss *session, r *request) []byte {
		ss.releaseWatch(true)
		return replyOK
	})(ss, r)
}

// releaseWatch ends a WATCH: the private connection goes back to its loop's idle list after
// UNWATCH (closed without).
func (ss *session) releaseWatch(unwatch bool) {
	tx := &ss.tx
	if tx.watchConn == nil {
		return
	}
	ok := unwatch
	if unwatch {
		_, err := tx.watchConn.roundTrip([]byte("*1\r\n$7\r\nUNWATCH\r\n"), 1, false)
		ok = err == nil
	}
	tx.watchConn.release(ok)
	tx.watchConn, tx.watchNode = nil, nil
	tx.slot = -1
}

// txWatch pins a private connection to the owner of the watched keys' slot; the
// transaction that follows runs on it.
func txWatch(ss *session, r *request) bool {
	if ss.tx.inMulti {
		return localHandler(func(*session, *request) []byte { return resp.ErrorReply("ERR WATCH inside MULTI is not allowed") })(ss, r)
	}
	if len(r.args) < 2 {
		return localHandler(func(*session, *request) []byte { return wrongArgs("watch") })(ss, r)
	}
	slot := command.KeySlot(r.args[1])
	for _, k := range r.args[2:] {
		if command.KeySlot(k) != slot {
			return localHandler(func(*session, *request) []byte { return errCrossSlot })(ss, r)
		}
	}
	if ss.tx.watchConn != nil && ss.tx.slot != slot {
		return localHandler(func(*session, *request) []byte { return errCrossSlot })(ss, r)
	}
	return execHandler(func(ss *session, r *request) []byte {
		tx := &ss.tx
		if tx.watchConn == nil {
			m := ss.s.cl.smap.Load()
			if m == nil {
				return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
			}
			n := m.master(slot)
			pc, err := ss.acquirePriv(n)
			if err != nil {
				return resp.ErrorReply("ERR proxy: " + err.Error())
			}
			tx.watchConn, tx.watchNode, tx.slot = pc, n, slot
		}
		reps, err := tx.watchConn.roundTrip(r.raw, 1, false)
		if err != nil {
			ss.releaseWatch(false)
			return resp.ErrorReply("ERR proxy: " + err.Error())
		}
		if kind, _, _ := resp.ParseRedirect(reps[0]); kind != resp.RedirNone {
			// The slot is moving: a watch there cannot be kept reliably.
			ss.releaseWatch(true)
			ss.s.cl.requestRefresh(refreshMoved)
			return resp.ErrorReply("TRYAGAIN slot is being migrated, retry the WATCH")
		}
		return reps[0]
	})(ss, r)
}

// txExec runs the queued commands as MULTI … EXEC on one private connection to the slot
// owner (the WATCH's, if any).
func txExec(ss *session, r *request) bool {
	tx := &ss.tx
	if !tx.inMulti {
		return localHandler(func(*session, *request) []byte { return resp.ErrorReply("ERR EXEC without MULTI") })(ss, r)
	}
	queued, aborted, slot := tx.queued, tx.aborted, tx.slot
	tx.inMulti, tx.queued, tx.aborted = false, nil, false
	if aborted {
		return execHandler(func(ss *session, r *request) []byte {
			ss.releaseWatch(true)
			return replyExecAbort
		})(ss, r)
	}
	r.queued = queued
	return execHandler(func(ss *session, r *request) []byte {
		var cmd []byte
		cmd = append(cmd, "*1\r\n$5\r\nMULTI\r\n"...)
		for _, args := range queued {
			cmd = resp.AppendCommand(cmd, args...)
		}
		cmd = append(cmd, "*1\r\n$4\r\nEXEC\r\n"...)
		for attempt := 0; ; attempt++ {
			pc, n, owned := tx.watchConn, tx.watchNode, false
			if pc == nil {
				m := ss.s.cl.smap.Load()
				if m == nil {
					return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
				}
				if slot >= 0 {
					n = m.master(slot)
				} else {
					n = m.masters[0]
				}
				var err error
				if pc, err = ss.acquirePriv(n); err != nil {
					return resp.ErrorReply("ERR proxy: " + err.Error())
				}
				owned = true
			}
			reps, err := pc.roundTrip(cmd, len(queued)+2, false)
			pc.release(err == nil)
			if !owned { // EXEC ends the WATCH
				tx.watchConn, tx.watchNode, tx.slot = nil, nil, -1
			}
			if err != nil {
				return resp.ErrorReply("ERR proxy: " + err.Error())
			}
			ss.wrote(n)
			// A queued command redirected by the cluster aborted the transaction before
			// anything ran: run it again on the new owner (not after a WATCH, whose
			// guarantee would be lost).
			moved := false
			for _, rep := range reps[1 : len(reps)-1] {
				if k, s, addr := resp.ParseRedirect(rep); k == resp.RedirMoved {
					ss.s.cl.learnOwner(s, ss.s.cl.node(resolveAddr(addr, n.addr)))
					moved = true
				} else if k != resp.RedirNone {
					moved = true
				}
			}
			last := reps[len(reps)-1]
			if moved && owned && attempt < ss.s.conf().MaxRedirects && bytes.HasPrefix(last, []byte("-EXECABORT")) {
				if !ss.sleep(ss.s.conf().TryagainBackoff) {
					return last
				}
				continue
			}
			return last
		}
	})(ss, r)
}
