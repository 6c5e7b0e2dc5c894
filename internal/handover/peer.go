package handover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// readyzLine is the first line of a proxy's /readyz?vip=ADDR answer (proxy/hoststate.go,
// Server.ready): "[not ]active (CARP state S), …".
var readyzLine = regexp.MustCompile(`^(not )?active \(CARP state ([A-Za-z]+)\)`)

// ParseReadyz reads a proxy's /readyz?vip=ADDR answer (HTTP status and body) into a
// PeerStatus for peer.
func ParseReadyz(peer string, status int, body string) PeerStatus {
	ps := PeerStatus{Peer: peer}
	line, _, _ := strings.Cut(strings.TrimSpace(body), "\n")
	if status == http.StatusNotFound {
		ps.Err = fmt.Errorf("does not serve this VIP: %s", line)
		return ps
	}
	m := readyzLine.FindStringSubmatch(line)
	if m == nil || (status != http.StatusOK && status != http.StatusServiceUnavailable) {
		ps.Err = fmt.Errorf("unexpected /readyz answer %d %q", status, line)
		return ps
	}
	ps.Active = m[1] == ""
	ps.State = m[2]
	ps.SlotsComplete = strings.Contains(line, "covers all 16384 slots")
	return ps
}

// clientsLine matches the daemon's client gauge for one VIP in /metrics.
func clientsLine(vip string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^redis_carp_proxy_client_connections\{vip="` + regexp.QuoteMeta(vip) + `"\} (\S+)$`)
}

// ParseClients returns redis_carp_proxy_client_connections{vip="VIP"} from a /metrics
// page.
func ParseClients(metrics, vip string) (int, error) {
	m := clientsLine(vip).FindStringSubmatch(metrics)
	if m == nil {
		return 0, fmt.Errorf("no redis_carp_proxy_client_connections for vip %s in /metrics", vip)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("redis_carp_proxy_client_connections{vip=%q} = %q", vip, m[1])
	}
	return int(f), nil
}

// maxAnswer bounds what is read of an admin answer.
const maxAnswer = 4 << 20

// get fetches http://addr+path with c.
func get(ctx context.Context, c *http.Client, addr, path string) (int, string, error) {
	return do(ctx, c, http.MethodGet, addr, path)
}

// post sends POST http://addr+path with c.
func post(ctx context.Context, c *http.Client, addr, path string) (int, string, error) {
	return do(ctx, c, http.MethodPost, addr, path)
}

// do sends a request without a body and returns the status and (at most maxAnswer of)
// the body.
func do(ctx context.Context, c *http.Client, method, addr, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp.StatusCode, string(b), err
}

// HTTPPeers asks each peer's admin listener (HOST:PORT) for /readyz?vip=VIP.
func HTTPPeers(c *http.Client, peers []string) func(ctx context.Context, vip string) []PeerStatus {
	return func(ctx context.Context, vip string) []PeerStatus {
		out := make([]PeerStatus, len(peers))
		for i, p := range peers {
			status, body, err := get(ctx, c, p, "/readyz?vip="+url.QueryEscape(vip))
			if err != nil {
				out[i] = PeerStatus{Peer: p, Err: err}
				continue
			}
			out[i] = ParseReadyz(p, status, body)
		}
		return out
	}
}

// HTTPClients counts the running daemon's clients on a VIP from its admin listener's
// /metrics.
func HTTPClients(c *http.Client, admin string) func(ctx context.Context, vip string) (int, error) {
	return func(ctx context.Context, vip string) (int, error) {
		status, body, err := get(ctx, c, admin, "/metrics")
		if err != nil {
			return 0, err
		}
		if status != http.StatusOK {
			return 0, errors.New("admin /metrics answered " + strconv.Itoa(status))
		}
		return ParseClients(body, vip)
	}
}

// HoldCounts is the daemon's answer to a hold (proxy.HoldStatus): its clients on the VIP,
// those waiting for an answer, and those recently active that sent nothing yet.
type HoldCounts struct{ Clients, Waiting, Recent int }

// FormatHold is the daemon's /handover/hold answer; ParseHold reads it.
func FormatHold(h HoldCounts) string {
	return fmt.Sprintf("held clients=%d waiting=%d recent=%d", h.Clients, h.Waiting, h.Recent)
}

// ParseHold reads a /handover/hold answer.
func ParseHold(body string) (HoldCounts, error) {
	var h HoldCounts
	if _, err := fmt.Sscanf(strings.TrimSpace(body), "held clients=%d waiting=%d recent=%d", &h.Clients, &h.Waiting, &h.Recent); err != nil {
		return h, fmt.Errorf("unexpected /handover/hold answer %q", strings.TrimSpace(body))
	}
	return h, nil
}

// HTTPHold asks a daemon's admin listener (this host's, or a peer's when this host takes
// its VIPs back) to hold a VIP's clients for d.
func HTTPHold(c *http.Client) func(ctx context.Context, admin, vip string, d time.Duration) (HoldCounts, error) {
	return func(ctx context.Context, admin, vip string, d time.Duration) (HoldCounts, error) {
		status, body, err := post(ctx, c, admin, "/handover/hold?vip="+url.QueryEscape(vip)+"&for="+d.String())
		if err != nil {
			return HoldCounts{}, err
		}
		if status != http.StatusOK {
			return HoldCounts{}, fmt.Errorf("admin /handover/hold answered %d: %s", status, strings.TrimSpace(body))
		}
		return ParseHold(body)
	}
}

// HTTPRelease asks a daemon's admin listener to end a VIP's hold.
func HTTPRelease(c *http.Client) func(ctx context.Context, admin, vip string) error {
	return func(ctx context.Context, admin, vip string) error {
		status, body, err := post(ctx, c, admin, "/handover/release?vip="+url.QueryEscape(vip))
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("admin /handover/release answered %d: %s", status, strings.TrimSpace(body))
		}
		return err
	}
}
