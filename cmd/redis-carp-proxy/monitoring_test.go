package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/redis-carp-proxy/redis-carp-proxy/carp"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/config"
	"github.com/redis-carp-proxy/redis-carp-proxy/internal/gate"
	"github.com/redis-carp-proxy/redis-carp-proxy/proxy"
)

// recorder is a Registerer that keeps the collectors, so their descriptions can be read
// even for vectors that have no series yet.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedMetrics returns the names of every metric the daemon registers.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{}
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	proxy.NewServer(config.Default(), slog.New(slog.NewTextHandler(io.Discard, nil)), rec)
	gate.NewMetrics(rec)
	carp.NewMetrics(rec)
	names := map[string]bool{"up": true}
	for _, c := range rec.cs {
		ch := make(chan *prometheus.Desc, 256)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}
	return names
}

var metricRef = regexp.MustCompile(`\b(redis_carp_proxy_[a-z_]+|go_[a-z_]+|process_[a-z_]+|up)\b`)

// checkRefs fails for every metric expr refers to that is not exported.
func checkRefs(t *testing.T, where, expr string, names map[string]bool) int {
	t.Helper()
	n := 0
	for _, ref := range metricRef.FindAllString(expr, -1) {
		n++
		base := ref
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(ref, suf); ok && names[b] {
				base = b
			}
		}
		if !names[base] {
			t.Errorf("%s uses %s, which the proxy does not export", where, ref)
		}
	}
	return n
}

// TestAlertsAndDashboardUseExportedMetrics checks every metric name in the alert rules and
// the Grafana dashboard against what the daemon registers, and runs promtool on the rules.
func TestAlertsAndDashboardUseExportedMetrics(t *testing.T) {
	names := exportedMetrics(t)
	rules, err := os.ReadFile("../../etc/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, alert := range []string{"RedisCarpProxyNoActive", "RedisCarpProxyTwoActive", "RedisCarpProxySlotMapIncomplete",
		"RedisCarpProxyHighErrorRate", "RedisCarpProxyHighLatency", "RedisCarpProxyFrequentCARPTransitions", "RedisCarpProxyVIPsUnbalanced"} {
		if !strings.Contains(string(rules), "alert: "+alert+"\n") {
			t.Errorf("alerts.yml lacks %s", alert)
		}
	}
	if checkRefs(t, "alerts.yml", string(rules), names) < 9 {
		t.Error("alerts.yml refers to fewer metrics than it has rules")
	}

	raw, err := os.ReadFile("../../etc/grafana/redis-carp-proxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if checkRefs(t, "dashboard panel "+p.Title, tg.Expr, names) == 0 {
				t.Errorf("panel %q query %q uses no metric", p.Title, tg.Expr)
			}
			for _, ref := range metricRef.FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(ref, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	var unused []string
	for n := range names {
		if strings.HasPrefix(n, "redis_carp_proxy_") && !used[n] && n != "redis_carp_proxy_build_info" {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("proxy metrics missing from the dashboard: %v", unused)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; tools/install-deps.sh installs it): rules not checked")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../etc/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestMetricsDocListsEveryMetric checks that docs/metrics.md's metric table names every
// metric the daemon exports.
func TestMetricsDocListsEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(doc)
	if i := strings.Index(table, "All metric names start with"); i >= 0 {
		table = table[i:]
	} else {
		t.Fatal("docs/metrics.md has no metric table (\"All metric names start with\")")
	}
	for n := range exportedMetrics(t) {
		short, ok := strings.CutPrefix(n, "redis_carp_proxy_")
		if !ok {
			continue
		}
		if !strings.Contains(table, "`"+short+"`") {
			t.Errorf("docs/metrics.md metric table lacks `%s`", short)
		}
	}
}
