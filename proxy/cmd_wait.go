package proxy

import (
	"strconv"
	"sync"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/resp"

	"github.com/redis-carp-proxy/redis-carp-proxy/proxy/command"
)

// WAIT through the proxy: a client's writes went over connections shared with other
// clients, so a WAIT on a connection of its own would wait for nothing (Redis counts from the connection's last
// write). Instead, on every master this session wrote to, a private connection (private.go) makes a
// write of its own that leaves no trace (MULTI SET k DEL k EXEC on a proxy key in a slot of
// that master), which puts its offset at or after the client's writes, then WAITs. The
// reply is the smallest count over those masters (as Redis Cluster's agg_min policy).

var (
	slotTagsOnce sync.Once
	slotTags     [command.NumSlots]string
)

// tagForSlot returns a short string whose hash slot is slot.
func tagForSlot(slot int) string {
	slotTagsOnce.Do(func() {
		left := command.NumSlots
		for i := 0; left > 0; i++ {
			t := strconv.Itoa(i)
			if s := command.KeySlot([]byte(t)); slotTags[s] == "" {
				slotTags[s] = t
				left--
			}
		}
	})
	return slotTags[slot]
}

func execWait(ss *session, r *request) []byte {
	if len(r.args) != 3 {
		return wrongArgs("wait")
	}
	if _, err := strconv.ParseInt(string(r.args[1]), 10, 64); err != nil {
		return resp.ErrorReply("ERR value is not an integer or out of range")
	}
	if t, err := strconv.ParseInt(string(r.args[2]), 10, 64); err != nil {
		return resp.ErrorReply("ERR timeout is not an integer or out of range")
	} else if t < 0 {
		return resp.ErrorReply("ERR timeout is negative")
	}
	m := ss.s.cl.smap.Load()
	if m == nil {
		return resp.ErrorReply("ERR proxy: " + ErrNoSlotMap.Error())
	}
	first := map[*node]int{}
	for s := command.NumSlots - 1; s >= 0; s-- {
		first[m.master(s)] = s
	}
	var targets []*node
	ss.csMu.Lock()
	for n := range ss.written {
		if _, ok := first[n]; ok {
			targets = append(targets, n)
		}
	}
	ss.csMu.Unlock()
	if len(targets) == 0 {
		targets = m.masters[:1]
	}
	replies := make([][]byte, len(targets))
	var wg sync.WaitGroup
	for i, n := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := []byte("__redis-carp-proxy:wait:{" + tagForSlot(first[n]) + "}")
			cmd := resp.AppendCommand(nil, []byte("MULTI"))
			cmd = resp.AppendCommand(cmd, []byte("SET"), key, []byte("1"))
			cmd = resp.AppendCommand(cmd, []byte("DEL"), key)
			cmd = resp.AppendCommand(cmd, []byte("EXEC"))
			cmd = resp.AppendCommand(cmd, r.args...)
			pc, err := ss.acquirePriv(n) // private.go
			if err != nil {
				replies[i] = resp.ErrorReply("ERR proxy: " + err.Error())
				return
			}
			reps, err := pc.roundTrip(cmd, 5, false)
			pc.release(err == nil)
			switch {
			case err != nil:
				replies[i] = resp.ErrorReply("ERR proxy: " + err.Error())
			case len(reps[3]) == 0 || reps[3][0] != '*':
				replies[i] = resp.ErrorReply("ERR proxy: WAIT on " + n.addr + ": " + string(reps[3][:max(0, len(reps[3])-2)]))
			default:
				replies[i] = reps[4]
			}
		}()
	}
	wg.Wait()
	var least int64 = -1
	for _, rep := range replies {
		if rep[0] != ':' {
			return rep
		}
		v, err := strconv.ParseInt(string(rep[1:len(rep)-2]), 10, 64)
		if err != nil {
			return resp.ErrorReply("ERR proxy: unexpected WAIT reply")
		}
		if least < 0 || v < least {
			least = v
		}
	}
	return resp.AppendInt(nil, least)
}
