package main

import (
	"reflect"
	"testing"
)

func TestCellsOfAddsLargeValueCellsForSetAndGet(t *testing.T) {
	cells, err := cellsOf("set,get,mset", "50,500", "64,4096")
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 12+4 {
		t.Fatalf("%d cells, want 16: %v", len(cells), cells)
	}
	want := []cell{{"set", 1, 50, 4096}, {"set", 16, 50, 4096}, {"get", 1, 50, 4096}, {"get", 16, 50, 4096}}
	if got := cells[12:]; !reflect.DeepEqual(got, want) {
		t.Fatalf("large-value cells %v, want %v", got, want)
	}
	for _, ce := range cells[:12] {
		if ce.size != 64 {
			t.Fatalf("cell %v: the first size applies to the small cells", ce)
		}
	}
	for _, bad := range []string{"64,x", "0", ""} {
		if _, err := cellsOf("get", "50", bad); err == nil {
			t.Errorf("sizes %q accepted", bad)
		}
	}
}

func TestRequestsScaleDownForLargeValues(t *testing.T) {
	for _, tc := range []struct {
		ce   cell
		want int
	}{
		{cell{"get", 1, 50, 64}, 100000},
		{cell{"get", 16, 50, 4096}, 1000000},
		{cell{"mset", 16, 50, 64}, 400000},
		{cell{"set", 1, 50, 65536}, 6250},
		{cell{"set", 16, 50, 65536}, 62500},
		{cell{"set", 1, 50, 1 << 30}, 1000},
	} {
		if got := requests(tc.ce, 100000); got != tc.want {
			t.Errorf("requests(%v) = %d, want %d", tc.ce, got, tc.want)
		}
	}
}

func TestKeyspaceBoundsTheDataset(t *testing.T) {
	for size, want := range map[int]int{64: 100000, 4096: 100000, 65536: 6400, 1 << 30: 1000} {
		if got := keyspace(size); got != want {
			t.Errorf("keyspace(%d) = %d, want %d", size, got, want)
		}
	}
}
