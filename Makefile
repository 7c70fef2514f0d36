# Lanyard — the two commands that matter: `make demo` and `make test`.
# Both install what a fresh Debian machine lacks (scripts/install-deps.sh) before doing anything.

CARGO ?= cargo
.DEFAULT_GOAL := help

.PHONY: help deps build demo test book bench-smoke lint fuzz check-windows check-macos unit conformance interop bench bench-fleet ui ui-test webview tray-bench bench-servers bench-proxy bench-token bench-keys windows-e2e package package-msi package-test

help:
	@echo "make demo   start the dev testbed (IdP + 4 MCP servers: one denied, one to connect) and the tray app against it (CLI flow without a display)"
	@echo "make test   install what is missing, then the book, lint, every test tier and the conformance suite"
	@echo "make book   build the book (docs/) into target/book/ and check its links"
	@echo "make interop  the interop suite: real IdP (oidc-provider), ASes (fastmcp, Authlib), MCP servers and AI clients (SDK, Inspector, Claude Code)"
	@echo "make bench  sign-in -> all servers granted, N = 1, 10, 50, 200 at 50 ms latency"
	@echo "make bench-fleet  10,000 simulated agents x 20 servers for a day (virtual clock, the engine's scheduling code): IdP and busiest-AS rps, table + PNG"
	@echo "make bench-servers  a release agent with 10, 100, 500 servers: RSS, CPU, refreshes per second vs the cap"
	@echo "make bench-proxy  lanyard proxy (bearer and DPoP-bound) vs mcp-remote: added latency per tools/call, CPU, peak RSS"
	@echo "make tray-bench  the idle agent and the tray app (release): RSS, wake-ups, first paint"
	@echo "make bench-token  cold lanyard token X with a warm agent vs a Node one-liner, p50 (P2)"
	@echo "make bench-keys  sign-in -> all granted with the client key in a PEM file, SoftHSM2 and a TPM (swtpm)"
	@echo "make package  release builds, then the .deb, .rpm and .msi in target/packages/"
	@echo "make fuzz   every parser's libFuzzer target for FUZZ_SECS (default 600) each, two at a time (nightly; not part of make test)"
	@echo "make package-test  install, run, upgrade and remove each package (.deb here, .rpm in a scratch root, .msi under Wine)"

deps:
	scripts/install-deps.sh

# The status window's bundle (ui/dist), embedded into `lanyard-status` at compile time: every cargo
# build of the workspace needs it first (the tray, `lanyard-tray`, embeds no page).
ui:
	cd ui && npm run build --silent

build: deps ui
	$(CARGO) build --workspace --bins

demo: build
	scripts/demo.sh

# Rust (fmt, clippy), then the workflow (actionlint, with shellcheck on its run: blocks) and the
# shell scripts (shellcheck): scripts/lint-scripts.sh.
lint: ui
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	scripts/lint-scripts.sh

# Every test tier: unit + testbed + engine end-to-end (real HTTP on 127.0.0.1), with a real
# Secret Service (gnome-keyring in a private D-Bus session) for the keychain tests.
# LANYARD_REQUIRE_PROXY_CLIENTS=1: the proxy's third-party clients (.tools/proxy-interop, proxy-py)
# must be there; outside make those tests skip loudly instead.
unit: ui
	LANYARD_REQUIRE_PROXY_CLIENTS=1 scripts/with-keyring.sh $(CARGO) nextest run --workspace --no-fail-fast

conformance:
	$(CARGO) build -p lanyard-cli
	scripts/conformance.sh

# The interop suite (tests/interop): a real lanyard agent against pinned peers nobody on the team
# wrote (npm oidc-provider + our ID-JAG grant, PyPI fastmcp and Authlib, FastMCP servers) and real
# AI clients; prints `N passed, M failed`. About 1-2 min once .tools/ is installed.
interop: deps
	INTEROP_NO_INSTALL=1 scripts/interop.sh

# Windows compile checks: clippy -D warnings for x86_64-pc-windows-gnu over the whole workspace,
# the tray app included (mingw-w64). The exe itself runs under Wine in `make windows-e2e`.
check-windows: deps ui
	scripts/check-windows.sh

# macOS compile checks: clippy -D warnings for aarch64/x86_64-apple-darwin through cargo-zigbuild
# (core + CLI; nothing is linked or run: no macOS SDK here, see docs/src/contributor/platforms.md).
check-macos: deps
	scripts/check-macos.sh

# The status window's unit tests (Vitest, jsdom).
ui-test:
	cd ui && npx vitest run

# The tray and its status window in a real webview (tauri-driver + WebKitWebDriver) under Xvfb, against the testbed;
# screenshots land in target/artifacts/webview/.
webview: ui
	scripts/webview-e2e.sh

# The book (docs/): built with mdBook into target/book/, every relative link of it and of the
# README checked (files and #anchors), every chapter listed in SUMMARY.md.
book: deps
	.tools/mdbook/bin/mdbook build docs
	scripts/check-book-links.py

# The benchmarks at smoke size, so they cannot rot unseen (numbers are not judged here), all in the
# debug build: bench-token (1 round of 3 runs; its Node client once spoke an old protocol), bench
# (N = 1, no added latency, 1 run), bench-keys (N = 1, 1 run, PEM / SoftHSM2 / swtpm) and the fleet
# bench's day and month of people with 200 agents and 200 users, and bench-proxy (20 calls, one
# round: lanyard proxy bearer and DPoP-bound, mcp-remote, direct).
bench-smoke: deps
	PROFILE=debug ROUNDS=1 RUNS=3 scripts/bench-token.sh
	$(CARGO) build -q -p lanyard-testbed
	LANYARD_TESTBED_BIN=$(CURDIR)/target/debug/lanyard-testbed $(CARGO) bench --profile dev -p lanyard-tests --bench signin_to_granted -- --runs 1 --n 1 --latency-ms 0
	$(CARGO) bench --profile dev -p lanyard-tests --bench client_keys -- --n 1 --runs 1
	$(CARGO) run -q -p lanyard-fleet --bin lanyard-bench-fleet -- --agents 200 --users 200 --out target/artifacts/bench-fleet-smoke
	PROFILE=debug CALLS=20 ROUNDS=1 scripts/bench-proxy.sh >/dev/null

test: deps book lint check-windows check-macos unit ui-test webview conformance interop windows-e2e package-test bench-smoke

# The Windows lanyard.exe (debug, x86_64-pc-windows-gnu) under Wine against the testbed on 127.0.0.1
# (tests/tests/windows_wine.rs): the prefix is created once (.tools/wine-prefix, scripts/wine/),
# then named steps: registry policy, sign-in, named pipe, token, proxy under the Python MCP SDK,
# Credential Manager across a restart, live registry change. Missing Wine/mingw/Python fails it.
windows-e2e: deps
	scripts/wine/prefix.sh
	$(CARGO) build --target x86_64-pc-windows-gnu -p lanyard-cli --bin lanyard
	LANYARD_REQUIRE_WINE=1 $(CARGO) nextest run -p lanyard-tests --test windows_wine --run-ignored only --no-capture

# Every libFuzzer target (fuzz/fuzz_targets: WWW-Authenticate, PRM/AS metadata, token responses,
# policy JSON/plist/mobileconfig, broker framing, SSE, the JSON(C) editor, ID tokens) for FUZZ_SECS
# seconds each (default 600), two at a time under nice; per-target executions and crashes in
# fuzz/work/summary.tsv. Not part of `make test`: `make unit` replays the committed corpus and
# fuzz/regressions through the same properties on stable (crates/lanyard-fuzz/tests/corpus.rs).
fuzz:
	WITH_FUZZ=1 scripts/install-deps.sh
	scripts/fuzz.sh

# Issue 9's targets, release builds: the idle agent (10 servers, 5 min: RSS, wake-ups per thread)
# and the tray (launch -> ready, window open -> first paint, RSS open/closed, idle wake-ups).
# Reports numbers in target/artifacts/{agent-idle-bench,tray-bench}/; passes or fails on nothing.
tray-bench: deps ui
	PROFILE=release scripts/agent-idle-bench.sh
	PROFILE=release IDLE_SECS=120 scripts/tray-bench.sh

# Issue 13's sign-in benchmark: the testbed (release) in its own process, so the CPU column is the
# engine's alone; grants vs the RTT targets, engine CPU per grant, the IdP's peak in flight.
bench: deps
	$(CARGO) build --release -q -p lanyard-testbed
	$(CARGO) bench -p lanyard-tests --bench signin_to_granted
	$(CARGO) bench -p lanyard-tests --bench first_use

# Issue 13: 10,000 agents x 20 servers on a virtual clock, scheduled by the engine's own
# lanyard-schedule functions (sign-ins 09:00-09:30, a day of refreshes, a 20-minute outage at 13:00).
# Prints the IdP's and the busiest AS's requests per second per phase and each target met or not;
# writes bench-fleet.md, summary.csv, per-second.csv and bench-fleet.png to target/artifacts/bench-fleet/
# and copies the plot into the book (docs/src/). Release build ~1 min cold; the run takes seconds.
# Not part of `make test`: `make unit` runs a 200-agent version (crates/lanyard-fleet/tests).
bench-fleet: deps
	$(CARGO) run --release -q -p lanyard-fleet --bin lanyard-bench-fleet -- --out target/artifacts/bench-fleet
	cp target/artifacts/bench-fleet/bench-fleet.png docs/src/bench-fleet.png

# Issue 13: a release agent with 10, 100 and 500 servers: RSS, CPU for sign-in and per refresh,
# refreshes per second and the most in flight against the cap (from the testbed's traffic log).
bench-servers: deps
	scripts/many-servers-bench.sh

# P3: `lanyard proxy` vs npm mcp-remote, 1,000 tools/call each: added latency p50/p99, peak RSS.
bench-proxy: deps
	scripts/bench-proxy.sh

bench-token: deps
	scripts/bench-token.sh

# Issue 21: sign-in -> all granted for N = 1, 10, 50 with the client key in a PEM file, a SoftHSM2
# token and a TPM 2.0 (swtpm + tpm2-pkcs11), every assertion signed fresh; the table goes to
# target/artifacts/bench-keys.md.
bench-keys: deps
	$(CARGO) bench -p lanyard-tests --bench client_keys

# Installers MDM can push, side by side in target/packages/: lanyard_<v>_amd64.deb (dpkg-deb),
# lanyard-<v>-1.x86_64.rpm (rpmbuild), Lanyard-<v>-x64.msi (wixl), from release builds for Linux and
# x86_64-pc-windows-gnu; the .msi ships lanyard.exe, lanyard-tray.exe and lanyard-status.exe. With
# LANYARD_SIGN_PFX (PKCS#12) and LANYARD_SIGN_PASS the three .exe and the .msi are Authenticode-signed
# (osslsigncode). See scripts/package/.
package: deps ui
	scripts/package/build.sh

# The .msi alone (the CI workflow's Linux job): Windows release builds, then scripts/package/msi.sh
# (signed when LANYARD_SIGN_PFX + LANYARD_SIGN_PASS are set).
package-msi: deps ui
	$(CARGO) build --release --target x86_64-pc-windows-gnu -p lanyard-cli -p lanyard-tray -p lanyard-status
	scripts/package/msi.sh

# Each package really installed, run, upgraded and removed: the .deb on this machine (root; the
# machine is left as found), the .rpm into a scratch root, the .msi under Wine (its own prefix).
# Built from the debug binaries `make test` already has (Linux + target/x86_64-pc-windows-gnu/debug).
package-test: deps ui
	scripts/package/test.sh
