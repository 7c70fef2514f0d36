# Lanyard — the two commands that matter: `make demo` and `make test`.
# Both install what a fresh Debian machine lacks (scripts/install-deps.sh) before doing anything.

CARGO ?= cargo
.DEFAULT_GOAL := help

.PHONY: help deps build demo test lint unit conformance bench

help:
	@echo "make demo   start the dev testbed (IdP + 3 MCP servers, one denied) and sign in with the CLI"
	@echo "make test   install what is missing, then lint, every test tier and the conformance suite"
	@echo "make bench  sign-in -> all servers granted, N = 1, 10, 50, 200 at 50 ms latency"

deps:
	scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

demo: build
	scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every test tier: unit + testbed + engine end-to-end (real HTTP on 127.0.0.1), with a real
# Secret Service (gnome-keyring in a private D-Bus session) for the keychain tests.
unit:
	scripts/with-keyring.sh $(CARGO) nextest run --workspace --no-fail-fast

conformance:
	$(CARGO) build -p lanyard-cli
	scripts/conformance.sh

test: deps lint unit conformance

bench: deps
	$(CARGO) bench -p lanyard-tests --bench signin_to_granted
