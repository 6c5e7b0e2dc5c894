package clusteradmin

import (
	"fmt"
	"slices"
	"strings"
)

// layout is the role of every node in a cluster to create.
type layout struct {
	masters    []string            // in slot order
	replicasOf map[string][]string // master → its replicas
	slots      map[string][2]int   // master → its slot range
}

// maxSearchSteps bounds the replica placement search.
const maxSearchSteps = 200000

// planLayout gives every host its share of masters (one each when there are as many
// masters as hosts) and places every replica on another host than its master, preferring
// for the master on the n-th host the (n-1)-th host, then spreading a master's replicas
// over distinct hosts. The slots are split evenly in contiguous ranges.
func planLayout(addrs []string, replicas int) (layout, error) {
	if replicas < 0 {
		return layout{}, fmt.Errorf("%w: --replicas %d", ErrBadArgs, replicas)
	}
	if len(addrs)%(1+replicas) != 0 {
		return layout{}, fmt.Errorf("%w: %d nodes cannot be split into masters with %d replica(s) each", ErrBadArgs, len(addrs), replicas)
	}
	nm := len(addrs) / (1 + replicas)
	if nm < 3 {
		return layout{}, fmt.Errorf("%w: a Redis Cluster needs at least 3 masters; %d nodes with %d replica(s) each give %d", ErrBadArgs, len(addrs), replicas, nm)
	}
	var hosts []string
	byHost := map[string][]string{}
	for _, a := range addrs {
		h := hostOf(a)
		if _, ok := byHost[h]; !ok {
			hosts = append(hosts, h)
		}
		byHost[h] = append(byHost[h], a)
	}
	hostIdx := map[string]int{}
	for i, h := range hosts {
		hostIdx[h] = i
	}

	// Masters: round robin over the hosts, k-th instance of every host in turn.
	l := layout{replicasOf: map[string][]string{}, slots: map[string][2]int{}}
	used := map[string]bool{}
	for k := 0; len(l.masters) < nm; k++ {
		for _, h := range hosts {
			if k < len(byHost[h]) && len(l.masters) < nm {
				l.masters = append(l.masters, byHost[h][k])
				used[byHost[h][k]] = true
			}
		}
	}
	var rest []string
	for _, a := range addrs {
		if !used[a] {
			rest = append(rest, a)
		}
	}

	// Replicas: depth-first search over the replica places, best candidates first.
	type place struct{ master string }
	var places []place
	for i := 0; i < replicas; i++ {
		for _, m := range l.masters {
			places = append(places, place{m})
		}
	}
	taken := map[string]bool{}
	assign := make([]string, len(places))
	steps := 0
	var search func(i int) bool
	search = func(i int) bool {
		if i == len(places) {
			return true
		}
		if steps++; steps > maxSearchSteps {
			return false
		}
		m := places[i].master
		mh := hostIdx[hostOf(m)]
		sameMaster := map[string]bool{}
		for j := 0; j < i; j++ {
			if places[j].master == m {
				sameMaster[hostOf(assign[j])] = true
			}
		}
		var cands []string
		for _, a := range rest {
			if !taken[a] && hostOf(a) != hostOf(m) {
				cands = append(cands, a)
			}
		}
		// Preference: a host not yet holding a replica of m, then the host just before
		// m's host in the ring, then the one before that, and so on.
		rank := func(a string) int {
			d := (mh - hostIdx[hostOf(a)] + len(hosts)) % len(hosts)
			if sameMaster[hostOf(a)] {
				d += len(hosts)
			}
			return d
		}
		slices.SortStableFunc(cands, func(a, b string) int { return rank(a) - rank(b) })
		tried := map[string]bool{}
		for _, a := range cands {
			if tried[hostOf(a)] {
				continue // another instance of the same host is an equivalent choice
			}
			tried[hostOf(a)] = true
			taken[a], assign[i] = true, a
			if search(i + 1) {
				return true
			}
			taken[a] = false
		}
		return false
	}
	if !search(0) {
		return layout{}, fmt.Errorf("%w (hosts: %s)", ErrNoLayout, describeHosts(hosts, byHost))
	}
	for i, p := range places {
		l.replicasOf[p.master] = append(l.replicasOf[p.master], assign[i])
	}
	for i, m := range l.masters {
		l.slots[m] = [2]int{i * NumSlots / nm, (i+1)*NumSlots/nm - 1}
	}
	if err := l.verify(addrs); err != nil {
		return layout{}, err
	}
	return l, nil
}

func describeHosts(hosts []string, byHost map[string][]string) string {
	var parts []string
	for _, h := range hosts {
		parts = append(parts, fmt.Sprintf("%s has %d", h, len(byHost[h])))
	}
	return strings.Join(parts, ", ")
}

// verify checks what the layout promises instead of trusting the planner: every node has
// exactly one role, no replica shares its master's host, the masters are spread over the
// hosts, and the slot ranges cover every slot once.
func (l layout) verify(addrs []string) error {
	seen := map[string]int{}
	perHost := map[string]int{}
	for _, a := range addrs {
		perHost[hostOf(a)] += 0
	}
	for _, m := range l.masters {
		seen[m]++
		perHost[hostOf(m)]++
		for _, r := range l.replicasOf[m] {
			seen[r]++
			if hostOf(r) == hostOf(m) {
				return fmt.Errorf("%w: %s would replicate %s on the same host", ErrNoLayout, r, m)
			}
		}
	}
	for _, a := range addrs {
		if seen[a] != 1 {
			return fmt.Errorf("cluster: internal error: %s has %d roles in the layout", a, seen[a])
		}
	}
	lo, hi := len(l.masters), 0
	for _, c := range perHost {
		lo, hi = min(lo, c), max(hi, c)
	}
	if hi-lo > 1 {
		return fmt.Errorf("%w: masters per host range from %d to %d", ErrNoLayout, lo, hi)
	}
	next := 0
	for _, m := range l.masters {
		r := l.slots[m]
		if r[0] != next || r[1] < r[0] {
			return fmt.Errorf("cluster: internal error: slot range %v of %s", r, m)
		}
		next = r[1] + 1
	}
	if next != NumSlots {
		return fmt.Errorf("cluster: internal error: slots end at %d", next)
	}
	return nil
}
