#!/usr/bin/env bash
# The tray and status window's real-webview end-to-end tests: tauri-driver + WebKitWebDriver under Xvfb, in a
# private D-Bus session with an unlocked gnome-keyring (scripts/with-keyring.sh), against the
# testbed. Screenshots land in target/artifacts/webview/.
#
#   scripts/webview-e2e.sh            # what `make webview` runs
# Needs what scripts/install-deps.sh installs (xvfb, webkit2gtk-driver, trayer, tauri-driver) and
# the status window's bundle (`make ui`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"

# The scripted browser, the CLI (`lanyard token`, `lanyard clients`) and the tray (`lanyard-tray`,
# no webview) must be built before the test launches them; the status window is built by nextest
# for the test (CARGO_BIN_EXE_lanyard-status), with the same features as the unit tier, so tauri
# is not compiled once more.
"$CARGO" build -q -p lanyard-testbed -p lanyard-cli -p lanyard-tray --bins

# xvfb-run gives the display; with-keyring.sh the private session bus + Secret Service.
# `timeout` so a wedged webview can never hang the suite; one test at a time (they share the
# display and the tray host).
exec timeout --signal=TERM --kill-after=20 600 \
  xvfb-run -a -s '-screen 0 1280x800x24' \
  scripts/with-keyring.sh \
  "$CARGO" nextest run -p lanyard-status --test webview --run-ignored only --no-fail-fast --test-threads 1 \
  2> >(grep -v -e 'Failed to set fd limit' >&2)
