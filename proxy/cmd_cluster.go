package proxy

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
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
		return resp.AppendBulkString(nil, fmt.Sprintf("cluster_enabled:1\r\ncluster_state:%s\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n", state))
	case "myid":
		return resp.AppendBulkString(nil, id)
	case "keyslot":
		if len(r.args) != 3 {
			return wrongArgs("cluster|keyslot")
		}
		return resp.AppendInt(nil, int64(command.KeySlot(r.args[2])))
	case "slots":
		b := resp.AppendArrayHeader(nil, 1)
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendInt(b, 0)
		b = resp.AppendInt(b, command.NumSlots-1)
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendBulkString(b, host)
		b = resp.AppendInt(b, int64(port))
		return resp.AppendBulkString(b, id)
	case "shards":
		b := resp.AppendArrayHeader(nil, 1)
		b = resp.AppendArrayHeader(b, 4)
		b = resp.AppendBulkString(b, "slots")
		b = resp.AppendArrayHeader(b, 2)
		b = resp.AppendInt(b, 0)
		b = resp.AppendInt(b, command.NumSlots-1)
		b = resp.AppendBulkString(b, "nodes")
		b = resp.AppendArrayHeader(b, 1)
		b = resp.AppendArrayHeader(b, 14)
		for _, kv := range [][2]string{{"id", id}, {"ip", host}, {"endpoint", host}, {"role", "master"}, {"health", "online"}} {
			b = resp.AppendBulkString(b, kv[0])
			b = resp.AppendBulkString(b, kv[1])
		}
		b = resp.AppendBulkString(b, "port")
		b = resp.AppendInt(b, int64(port))
		b = resp.AppendBulkString(b, "replication-offset")
		return resp.AppendInt(b, 0)
	case "nodes":
		return resp.AppendBulkString(nil, fmt.Sprintf("%s %s:%d@0 myself,master - 0 0 1 connected 0-16383\n", id, host, port))
	}
	return resp.ErrorReply(fmt.Sprintf("ERR CLUSTER %s is not supported by the proxy", strings.ToUpper(string(r.args[1]))))
}
