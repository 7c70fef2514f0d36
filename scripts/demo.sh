#!/usr/bin/env bash
# The demo on the embedded default: the dev testbed (an IdP and three MCP servers, alice denied
# Payroll by policy) and the headless CLI flow against it: `lanyard login` opens the IdP's login
# page, `lanyard status` shows each server, `lanyard token docs` proves a token works.
#
# Browser: on a desktop with $DISPLAY, the system browser opens and you pick a user. Without a
# display (or with LANYARD_DEMO_BROWSER=scripted) a scripted browser submits the login page as
# alice@example.com, so the demo runs end to end anywhere.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/debug"
WORK="$(mktemp -d)"
cleanup() { [ -n "${TESTBED_PID:-}" ] && kill "$TESTBED_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN/lanyard-testbed" serve --demo --write-policy "$WORK/policy.json" >"$WORK/testbed.log" 2>&1 &
TESTBED_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/policy.json" ] && break; sleep 0.1; done
[ -s "$WORK/policy.json" ] || { cat "$WORK/testbed.log"; echo "demo: the testbed did not start" >&2; exit 1; }
cat "$WORK/testbed.log"
echo

export LANYARD_POLICY="$WORK/policy.json"
export PATH="$BIN:$PATH"
if [ -n "${DISPLAY:-}" ] && [ "${LANYARD_DEMO_BROWSER:-system}" = "system" ]; then
  echo "demo: signing in with your browser — pick a user on the login page."
else
  echo "demo: no display — a scripted browser signs in as alice@example.com."
  export BROWSER="lanyard-testbed browse --user alice@example.com"
fi

run_flow() {
  set -e
  echo "\$ lanyard login";            lanyard login 2>/dev/null
  echo; echo "\$ lanyard status";     lanyard status
  echo; echo "\$ lanyard token docs --json  (token shortened)"
  lanyard token docs --json | sed -E 's/("access_token":"[^"]{12})[^"]*/\1…/'
  echo; echo "\$ lanyard token payroll"
  lanyard token payroll || echo "(exit $? — blocked by policy, as configured)"
  echo; echo "\$ lanyard logout";     lanyard logout
}
export -f run_flow
if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ "${LANYARD_DEMO_KEYRING:-}" != "private" ]; then
  run_flow
else
  # No desktop session: a private, unlocked gnome-keyring holds the session for the demo's length.
  scripts/with-keyring.sh bash -c run_flow 2> >(grep -v 'fd limit' >&2)
fi
