# The two commands: `make demo` and `make test`. Everything else is a helper target.
SHELL := /bin/bash
export PATH := $(PATH):/opt/swift/usr/bin

.PHONY: setup build release demo test unit e2e bench bench-push bench-http clean

setup:
	@scripts/setup.sh

build: setup
	swift build --build-tests

release: setup
	swift build -c release

## Build, start a daemon on loopback with a generated token, push a sample volume, verify it.
demo: release
	@scripts/demo.sh

## Unit tests (Swift Testing) and end-to-end tests against the built binaries (pytest).
test: build
	swift test --skip-build
	TRANSFER_BIN=$$(swift build --show-bin-path) python3 -m pytest -q Tests/e2e

unit: build
	swift test --skip-build

e2e: build
	TRANSFER_BIN=$$(swift build --show-bin-path) python3 -m pytest -q Tests/e2e

## The standard volumes through a local transferd, medians next to same-run baselines (table, JSON, chart).
bench: release
	mkdir -p .bench
	.build/release/transfer-send bench --corpus mixed,large,tiny --scale $${BENCH_SCALE:-0.25} --runs $${BENCH_RUNS:-5} \
		--modes gzip,auto --work .bench/corpora --json .bench/bench.json --chart .bench/bench.svg

## Push a 1 GiB corpus through release binaries and report rate and each side's peak RSS.
bench-push: release
	@scripts/bench-push.sh

## Download and upload MB/s of a large file: transferd next to nginx serving the same file, same run.
bench-http: release
	@scripts/bench-http.sh

clean:
	rm -rf .build .demo
