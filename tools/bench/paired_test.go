package main

import "testing"

func TestPaired(t *testing.T) {
	proxy := []sample{{rps: 100, cpuPerM: 2}, {rps: 80, cpuPerM: 3}, {rps: 120, cpuPerM: 1.5}}
	peer := []sample{{rps: 90, cpuPerM: 2.5}, {rps: 100, cpuPerM: 2.4}, {rps: 100, cpuPerM: -1}}
	rps := func(s sample) float64 { return s.rps }
	cpu := func(s sample) float64 { return s.cpuPerM }
	// Ratios 1.11, 0.80, 1.20: median 1.11, the proxy ahead in rounds 1 and 3.
	if got := paired(proxy, peer, rps, true); got != "1.11 (2/3)" {
		t.Errorf("req/s paired = %q", got)
	}
	// Round 3 has no CPU figure for the peer: left out. Ratios 0.80, 1.25.
	if got := paired(proxy, peer, cpu, false); got != "1.25 (1/2)" {
		t.Errorf("CPU paired = %q", got)
	}
	if got := paired(nil, peer, rps, true); got != "–" {
		t.Errorf("no rounds: %q", got)
	}
}
