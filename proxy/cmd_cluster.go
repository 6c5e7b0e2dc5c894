package proxy

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The proxy presents itself to cluster-aware clients as a cluster of one node that owns
// every slot, at the announce address (the VIP), so they keep talking to the proxy and
// never learn the physical addresses.

func (s *Server) announce() (host string, port int) {
	addr := s.conf().AnnounceAddress
	if addr == "" {
		addr = s.conf().Listen
	}
	h, p, _ := net.SplitHostPort(addr)
	port, _ = strconv.Atoi(p)
	return h, port
}

// nodeID is the virtual node's 40-character id, stable for an announce address.
func (s *Server) nodeID() string {
	h, p := s.announce()
	sum := sha1.Sum([]byte(net.JoinHostPort(h, strconv.Itoa(p))))
	return hex.EncodeToString(sum[:])
}

func clusterCommand(ss *session, r *request) []byte {
	s := ss.s
	if len(r.args) < 2 {
		return wrongArgs("cluster")
	}
	host, port := s.announce()
	id := s.nodeID()
	switch lowerName(r.args[1]) {
	case "info":
		state := "ok"
		if s.cl.smap.Load() == nil {
			state = "fail"
		}
		return appendBulkString(nil, fmt.Sprintf("cluster_enabled:1\r\ncluster_state:%s\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n", state))
	case "myid":
		return appendBulkString(nil, id)
	case "keyslot":
		if len(r.args) != 3 {
			return wrongArgs("cluster|keyslot")
		}
		return appendInt(nil, int64(KeySlot(r.args[2])))
	case "slots":
		b := appendArrayHeader(nil, 1)
		b = appendArrayHeader(b, 3)
		b = appendInt(b, 0)
		b = appendInt(b, NumSlots-1)
		b = appendArrayHeader(b, 3)
		b = appendBulkString(b, host)
		b = appendInt(b, int64(port))
		return appendBulkString(b, id)
	case "shards":
		b := appendArrayHeader(nil, 1)
		b = appendArrayHeader(b, 4)
		b = appendBulkString(b, "slots")
		b = appendArrayHeader(b, 2)
		b = appendInt(b, 0)
		b = appendInt(b, NumSlots-1)
		b = appendBulkString(b, "nodes")
		b = appendArrayHeader(b, 1)
		b = appendArrayHeader(b, 14)
		for _, kv := range [][2]string{{"id", id}, {"ip", host}, {"endpoint", host}, {"role", "master"}, {"health", "online"}} {
			b = appendBulkString(b, kv[0])
			b = appendBulkString(b, kv[1])
		}
		b = appendBulkString(b, "port")
		b = appendInt(b, int64(port))
		b = appendBulkString(b, "replication-offset")
		return appendInt(b, 0)
	case "nodes":
		return appendBulkString(nil, fmt.Sprintf("%s %s:%d@0 myself,master - 0 0 1 connected 0-16383\n", id, host, port))
	}
	return errorReply(fmt.Sprintf("ERR CLUSTER %s is not supported by the proxy", strings.ToUpper(string(r.args[1]))))
}

// clientState is what CLIENT SETNAME/SETINFO record for a session.
type clientState struct {
	name, libName, libVer string
	user                  string // as authenticated ("" : default)
	created               time.Time
}

// CLIENT REPLY modes carried by a request to the session writer.
const (
	replyModeOn int8 = iota + 1
	replyModeOff
	replyModeSkip
)

// resetCommand answers RESET: the reader-side state is reset at once; the dedicated
// connections (WATCH, subscriptions) are released by the writer, in order.
func resetCommand(ss *session, r *request) bool {
	ss.tx.inMulti, ss.tx.queued, ss.tx.aborted = false, nil, false
	ss.authed, ss.readonly = !ss.s.authRequired(), false
	ss.resp3.Store(false) // as Redis: RESET goes back to RESP2
	ss.csMu.Lock()
	ss.cs.name, ss.cs.user = "", ""
	ss.csMu.Unlock()
	r.replyMode = replyModeOn
	r.exec, r.barrier = func(ss *session, r *request) []byte {
		ss.releaseWatch(true)
		ss.closePubsub()
		// Messages the relays queued before the reset go out before its reply.
		var out []byte
		for _, m := range ss.pending.takeMsgs() {
			out = append(out, m...)
			ss.releaseOut(int64(len(m)))
		}
		ss.inPubSub.Store(false)
		return append(out, "+RESET\r\n"...)
	}, true
	return true
}

func clientCommand(ss *session, r *request) []byte {
	if len(r.args) < 2 {
		return wrongArgs("client")
	}
	sub := lowerName(r.args[1])
	switch sub {
	case "setname":
		if len(r.args) != 3 {
			return wrongArgs("client|setname")
		}
		if !validClientAttr(r.args[2]) {
			return replyBadClientName
		}
		ss.csMu.Lock()
		ss.cs.name = string(r.args[2])
		ss.csMu.Unlock()
		return replyOK
	case "getname", "id", "info":
		if len(r.args) != 2 {
			return wrongArgs("client|" + sub)
		}
	}
	switch sub {
	case "getname":
		if ss.cs.name == "" {
			return replyNil
		}
		return appendBulkString(nil, ss.cs.name)
	case "setinfo":
		if len(r.args) != 4 {
			return wrongArgs("client|setinfo")
		}
		if opt := lowerName(r.args[2]); (opt == "lib-name" || opt == "lib-ver") && !validClientAttr(r.args[3]) {
			return errorReply("ERR " + opt + " cannot contain spaces, newlines or special characters.")
		}
		ss.csMu.Lock()
		defer ss.csMu.Unlock()
		switch lowerName(r.args[2]) {
		case "lib-name":
			ss.cs.libName = string(r.args[3])
		case "lib-ver":
			ss.cs.libVer = string(r.args[3])
		default:
			return errorReply("ERR Unrecognized option '" + string(r.args[2]) + "'")
		}
		return replyOK
	case "id":
		return appendInt(nil, int64(ss.id))
	case "info":
		return appendBulkString(nil, ss.clientLine(true))
	case "list":
		return clientList(ss, r)
	case "kill":
		return clientKill(ss, r)
	case "no-evict", "no-touch":
		if len(r.args) != 3 {
			return wrongArgs("client|" + sub)
		}
		if m := lowerName(r.args[2]); m != "on" && m != "off" {
			return errorReply("ERR syntax error")
		}
		return replyOK
	case "reply":
		if len(r.args) != 3 {
			return wrongArgs("client|reply")
		}
		switch lowerName(r.args[2]) {
		case "on":
			r.replyMode = replyModeOn
			return replyOK
		case "off":
			r.replyMode = replyModeOff
			return replyOK
		case "skip":
			r.replyMode = replyModeSkip
			return replyOK
		}
		return errorReply("ERR syntax error")
	}
	return errorReply(fmt.Sprintf("ERR CLIENT %s is not supported by the proxy", strings.ToUpper(string(r.args[1]))))
}
