# bidpulse: every developer and CI task goes through this file.
export GOTOOLCHAIN := local
GO ?= go
PKGS := ./...
# The cluster tests (bidder/node) run a 3-node JetStream cluster and several members in one
# process: they run after the other packages, alone, so that their load does not slow the
# others' NATS round trips past their deadlines.
CLUSTER_PKGS := ./bidder/node
OTHER_PKGS = $(shell $(GO) list ./... | grep -v '/bidder/node$$')
BIN := bin/bidpulse

.PHONY: all build run test test-short race bench fuzz lint clean

all: lint test

build:
	$(GO) build -o $(BIN) ./cmd/bidpulse

## run: start the service on its embedded defaults (embedded NATS on 127.0.0.1:4222, HTTP on :8080).
run: build
	./$(BIN) serve $(ARGS)

## test: the whole suite, with the race detector.
test: lint
	$(GO) test -race -count=1 -timeout 15m $(OTHER_PKGS)
	$(GO) test -race -count=1 -timeout 10m $(CLUSTER_PKGS)
	@# Allocation tests skip themselves under -race (sync.Pool drops items there), and the held-walk
	@# test runs at full size only without it: run them again without -race.
	$(GO) test -count=1 -run 'Alloc|WalksAreHeld' $(PKGS)

## race: the whole suite with the race detector only (no lint, no allocation re-run).
race:
	$(GO) test -race -count=1 -timeout 15m $(OTHER_PKGS)
	$(GO) test -race -count=1 -timeout 10m $(CLUSTER_PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

## bench: Go micro-benchmarks of every package (windows, models, ingest, handlers, bench), then a
## short steady and spike load test against a spawned service at half its measured capacity.
## Figures, JSON and self-contained HTML reports go to $(BENCH_OUT)/.
BENCH_OUT := bin/bench
bench: build
	@mkdir -p $(BENCH_OUT)
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=1s $(PKGS) > $(BENCH_OUT)/micro.txt 2>&1; \
	s=$$?; cat $(BENCH_OUT)/micro.txt; exit $$s
	./$(BIN) bench --spawn --scenario steady --bid-rate 50% --duration 10s \
		--json $(BENCH_OUT)/steady.json --html $(BENCH_OUT)/steady.html
	./$(BIN) bench --spawn --scenario spike --bid-rate 50% --duration 5s --spike-duration 5s \
		--json $(BENCH_OUT)/spike.json --html $(BENCH_OUT)/spike.html
	@echo "reports: $(BENCH_OUT)/steady.html $(BENCH_OUT)/spike.html; figures: $(BENCH_OUT)/micro.txt"

## fuzz: a bounded run ($(FUZZTIME) each) of every fuzz target, one at a time (go test -fuzz
## takes one target per run: each name is anchored). A new input that widens coverage is
## minimised for at most $(FUZZMINIMIZETIME), so short runs fuzz rather than minimise; a
## failing input is written to the package's testdata/fuzz/ (commit it with the fix).
FUZZTIME ?= 20s
FUZZMINIMIZETIME ?= 2s
fuzz:
	@set -e; n=0; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$t"; n=$$((n+1)); \
			$(GO) test -run=NONE -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) $$pkg; \
		done; \
	done; echo "fuzz: $$n targets, $(FUZZTIME) each"

## lint: gofmt, go vet, staticcheck, govulncheck against a local copy of the Go vulnerability
## database, and no tracked binaries. The tools are pinned and built once from the Go module
## proxy into $(TOOLS)/ (nothing else is fetched: CI reaches only the proxy). govulncheck fails on
## a called vulnerability unless govulncheck.accepted lists it with the reason
## (internal/tools/vulngate); staticcheck's checks are set in staticcheck.conf.
TOOLS := bin/tools
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0
# golang.org/x/vulndb, served as a module: its data/osv holds the advisories, which its
# cmd/indexdb turns into the database layout govulncheck reads (index/db.json,
# index/modules.json, ID/<id>.json).
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
GOVULNCHECK := $(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION)/govulncheck
VULNDB := $(TOOLS)/vulndb-$(VULNDB_VERSION)

lint: $(STATICCHECK) $(GOVULNCHECK) $(VULNDB)/index/modules.json
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	$(GOVULNCHECK) -db file://$(abspath $(VULNDB)) -format json $(PKGS) | $(GO) run ./internal/tools/vulngate -accepted govulncheck.accepted
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		git ls-files -z | $(GO) run ./internal/tools/binaries; \
	else echo "not a git checkout: the tracked-binaries check is skipped"; fi

$(STATICCHECK):
	GOBIN=$(abspath $(dir $@)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(GOVULNCHECK):
	GOBIN=$(abspath $(dir $@)) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(VULNDB)/index/modules.json:
	rm -rf $(VULNDB).tmp
	$(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION)
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) \
		-vulns "$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv" -out $(VULNDB).tmp
	rm -rf $(VULNDB) && mv $(VULNDB).tmp $(VULNDB)

clean:
	rm -rf bin data
