# Hardening targets: fuzzing, soak and idle-connection benchmark. Included by Makefile.
FUZZTIME ?= 30s
# How long the fuzzer may shrink an input that found new coverage (Go's default is 60s,
# during which no executions are reported).
FUZZMINTIME ?= 2s
DURATION ?= 10m
CONNS    ?= 10000
FUZZ_TARGETS := ./proxy/:FuzzClientRequest ./proxy/resp/:FuzzReplyFramer

.PHONY: fuzz fuzz-ci

# The brief fuzzing of each target that `make test` runs (the seed corpora run in every
# go test anyway). A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# fail a run with "context deadline exceeded" when the deadline falls while a worker is
# busy (go.dev/issue/75804, fixed in Go 1.27); 20,000 executions take 5-10 s here.
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

# Runs each fuzz target (PACKAGE:TARGET) for FUZZTIME (the seed corpora in each package's testdata/fuzz run in every
# `go test`). New crashers are written to PACKAGE/testdata/fuzz/<target>/.
fuzz:
	@for pt in $(FUZZ_TARGETS); do \
		p=$${pt%%:*}; t=$${pt#*:}; \
		echo "fuzz $$t ($$p) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$p || exit 1; \
	done

# Steady pipelined load plus a master kill, a replica failover, a slot migration and a
# stalled backend on a schedule; prints a report. Not part of `make test`.
soak: deps build
	$(GO) run ./tools/soak -proxy $(BIN) -duration $(DURATION)

# CONNS idle client connections; reports the proxy's RSS per connection.
bench-conns: deps build
	$(GO) run ./tools/benchconns -proxy $(BIN) -conns $(CONNS)
