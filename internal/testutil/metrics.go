package testutil

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// MetricSum gathers g and returns SeriesSum of the family called name (0 when there is
// none). labels are name, value pairs every counted series must have.
func MetricSum(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return SeriesSum(mf, labels...)
		}
	}
	return 0
}

// SeriesSum adds the values (counters, gauges) or observation counts (histograms) of the
// series of mf that have every label pair of labels (name, value, name, value …).
func SeriesSum(mf *dto.MetricFamily, labels ...string) float64 {
	var v float64
	for _, m := range mf.GetMetric() {
		if !HasLabels(m, labels...) {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v
}

// HasLabels reports whether m has every label pair of want (name, value, name, value …).
func HasLabels(m *dto.Metric, want ...string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
