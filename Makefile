# bidpulse: every developer and CI task goes through this file.
export GOTOOLCHAIN := local
GO ?= go
PKGS := ./...
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
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	@# Allocation tests skip themselves under -race (sync.Pool drops items there), and the held-walk
	@# test runs at full size only without it: run them again without -race.
	$(GO) test -count=1 -run 'Alloc|WalksAreHeld' $(PKGS)

## race: the whole suite with the race detector only (no lint, no allocation re-run).
race:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

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
## takes one target per run: each name is anchored).
FUZZTIME ?= 20s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$t"; \
			$(GO) test -run=NONE -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin data
