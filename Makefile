# redis-carp-proxy — see README.md. `make demo` and `make test` are all a newcomer needs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/redis-carp-proxy/redis-carp-proxy/proxy.Version=$(VERSION)
BIN      := build/redis-carp-proxy
TESTREPORT := build/testreport
# Packages whose tests exercise concurrency run under the race detector.
RACE_PKGS := ./carp/... ./pfctl/... ./proxy/... ./internal/...

.PHONY: all build deps test test-short vet bench demo soak bench-conns clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/redis-carp-proxy

deps:
	@sh tools/install-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	GOOS=freebsd GOARCH=amd64 $(GO) vet ./...
	GOOS=freebsd GOARCH=arm64 $(GO) vet ./...

# The whole test suite, in this order: install what the tests need (deps), gofmt and vet
# (vet), fuzz each fuzz target for 20,000 executions (fuzz-ci, in mk/hardening.mk), then every package's
# tests: unit tests, integration tests against real Redis Cluster processes, the netns
# CARP failover test (needs root; skips with a reason otherwise), and the proxy's tests once
# more on one core (GOMAXPROCS=1, a one-vCPU appliance: the event loop never holds its P
# there, even under load; see proxy/netpoll). tools/testreport prints
# go test's usual output, then every skipped test with its reason, then the packages'
# ok/FAIL lines again; it exits with go test's status.
test: deps vet fuzz-ci
	$(GO) build -o $(TESTREPORT) ./tools/testreport
	$(TESTREPORT) $(GO) test -json -race -count=1 -timeout 20m $(RACE_PKGS)
	$(TESTREPORT) $(GO) test -json -count=1 -timeout 20m $$($(GO) list ./... | grep -v -e /carp -e /pfctl -e /proxy -e /internal/)
	GOMAXPROCS=1 $(TESTREPORT) $(GO) test -json -count=1 -timeout 20m ./proxy/

# PEER=host:port PEER_CMD='…' adds a peer proxy column (tools/bench/predixy.sh starts predixy);
# REPS=N sets the interleaved rounds (default 3; the median is reported).
bench: deps build
	$(GO) run ./tools/bench -proxy $(BIN) $(if $(REPS),-reps $(REPS)) $(if $(PEER),-peer '$(PEER)') $(if $(PEER_CMD),-peer-cmd '$(PEER_CMD)')

demo: deps build
	$(GO) run ./tools/demo -proxy $(BIN)

clean:
	rm -rf build

-include mk/*.mk
