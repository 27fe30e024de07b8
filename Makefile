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
	@# Allocation tests skip themselves under -race (sync.Pool drops items there): run them again without it.
	$(GO) test -count=1 -run 'Alloc' $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

## bench: Go micro-benchmarks of every package.
bench:
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=1s $(PKGS)

## fuzz: a short run of every fuzz target.
fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=30s ./bidder/event/

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin data
