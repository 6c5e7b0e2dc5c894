package netpoll

import (
	"fmt"
	"strings"
	"testing"
)

// show renders changes as "fd:filter:flags" for comparisons.
func show(cs []kchange) string {
	var b strings.Builder
	for _, c := range cs {
		f := map[int16]string{evfiltRead: "R", evfiltWrite: "W"}[c.filter]
		var fl []string
		for _, x := range []struct {
			bit  uint16
			name string
		}{{evAdd, "add"}, {evDelete, "del"}, {evEnable, "on"}, {evDisable, "off"}} {
			if c.flags&x.bit != 0 {
				fl = append(fl, x.name)
			}
		}
		fmt.Fprintf(&b, "%d%s:%s ", c.fd, f, strings.Join(fl, "+"))
	}
	return strings.TrimSpace(b.String())
}

// The planning of kevent changes: one EV_ADD per filter, then EV_ENABLE/EV_DISABLE;
// changes of one batch coalesced; a descriptor added and removed before the wait costs
// the kernel nothing.
func TestChangeListPlans(t *testing.T) {
	c := newChangeList()
	step := func(want string) {
		t.Helper()
		if got := show(c.take()); got != want {
			t.Fatalf("changes %q, want %q", got, want)
		}
	}
	c.add(5, false)
	step("5R:add+on") // the write filter waits until it is wanted
	c.set(5, true, true)
	step("5W:add+on")
	c.set(5, true, false)
	step("5W:off") // toggled, not deleted: no knote freed and allocated again
	c.set(5, true, true)
	c.set(5, true, false) // on and off before the next wait: nothing
	step("")
	c.set(5, false, true)
	c.set(5, false, true) // unchanged: nothing more
	step("5R:off 5W:on")
	c.add(6, true)
	c.set(6, true, false) // added and disabled in one batch: added disabled
	step("6R:add+on 6W:add+off")
	c.add(7, false)
	c.remove(7) // never submitted: nothing
	step("")
	c.set(6, false, true)
	c.remove(6) // pending toggles cancelled, both filters deleted
	step("6R:del 6W:del")
	// A closed number reused in the same batch: the old descriptor's filters deleted,
	// the new one's added after them.
	c.remove(5)
	c.add(5, false)
	step("5R:del 5W:del 5R:add+on")
	if !c.registered(5) || c.registered(6) || c.registered(7) {
		t.Fatal("registered set wrong")
	}
	if err := c.set(6, true, false); err == nil {
		t.Fatal("set of an unregistered fd accepted")
	}
}

// BenchmarkChangeListRequest counts, per request, the kevent system calls of the two
// ways of changing interest, for a loop whose reply write to the client would block
// once (write interest on, a wait, writable, write interest off, a wait): one call per
// change plus the waits (the old poller), or the waits alone with the changes riding in
// their changelist (this one). The kernel is not involved: the FreeBSD-only
// BenchmarkKeventCallsPerRequest counts real calls.
func BenchmarkChangeListRequest(b *testing.B) {
	c := newChangeList()
	for fd := 10; fd < 110; fd++ {
		c.add(fd, false)
	}
	c.take()
	var changes, waits int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fd := 10 + i%100
		c.set(fd, true, true)
		changes += len(c.take()) // the wait that reports fd writable
		waits++
		c.set(fd, true, false)
		changes += len(c.take()) // the next wait
		waits++
	}
	b.ReportMetric(float64(changes+waits)/float64(b.N), "kevent-calls-unbatched/op")
	b.ReportMetric(float64(waits)/float64(b.N), "kevent-calls-batched/op")
}
