# spate — see README.md. Every target is safe on a fresh machine with Go 1.26.
GO       ?= go
PKGS     := ./...
BIN      := bin/spate
FUZZTIME ?= 5s

.PHONY: all build test vet fmt-check bench fuzz-smoke demo clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/spate

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The README's test command: vet, format check, the race-enabled test suite,
# then the allocation tests without -race (the race detector makes sync.Pool
# drop items, so under -race they can only log).
test: vet fmt-check
	$(GO) test -race -timeout 30m -count=1 $(PKGS)
	$(GO) test -count=1 -run 'Allocs|Footprint' ./codec/... ./engine/... ./scheduler/...

# Micro-benchmarks (allocations and ns/op beside their standard-library baselines),
# then the bench harness scenarios with their markdown report and chart.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s $(PKGS)
	./$(BIN) bench --scenarios all --report bench-report.md

# Each fuzz target for FUZZTIME (go test allows one -fuzz target per run).
fuzz-smoke:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

# The main job: an embedded demo campaign against a local sink (offline).
demo: build
	./$(BIN) demo

clean:
	rm -rf bin bench-report.md
