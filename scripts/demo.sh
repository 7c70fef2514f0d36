#!/usr/bin/env bash
# The demo on the embedded default: the dev testbed (an IdP and three MCP servers, alice denied
# Payroll by policy) and, on a desktop, the Lanyard tray (`lanyard-tray`) against it: it starts
# `lanyard agent`, opens its status window (`lanyard-status`, beside it in target/debug), Sign in
# opens the dev IdP's login page in your browser, and the window and the tray icon follow.
# `lanyard token docs` works against the agent meanwhile.
#
# Without a display (or with LANYARD_DEMO_MODE=cli) the demo says so and runs the headless agent
# flow instead: `lanyard login` opens the IdP's login page, `lanyard status` shows each server,
# `lanyard token docs` proves a token works. Tickets is DPoP-bound (its authorization server
# binds tokens to the device's key): a headers client is refused its token, `lanyard token
# tickets --dpop METHOD URL` prints one with the proof for that one request. Wiki speaks only the
# standard MCP authorization (`mode: oauth`): its card and the tray menu offer Connect, which opens
# its own sign-in once (`lanyard connect wiki` in the CLI flow); the agent keeps it fresh after.
#
# Browser: on a desktop with $DISPLAY, the system browser opens and you pick a user. Without a
# display (or with LANYARD_DEMO_BROWSER=scripted) a scripted browser submits the login page as
# alice@example.com, so the demo runs end to end anywhere.
#
# LANYARD_DEMO_IDP=saml: the same world, but the policy signs in with SAML 2.0 (`idp.sign_in:
# saml`): the browser opens the dev IdP's SAML SSO page, its answer posts a signed assertion to
# Lanyard's loopback, and Lanyard exchanges it for an IdP refresh token that backs every grant.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/debug"
WORK="$(mktemp -d)"
stop_agent() {
  # `lanyard login` started an agent for the demo's private socket; its lock file holds its pid.
  local pid
  pid="$(tr -dc '0-9' <"$WORK/agent.lock" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  # Wait for it to go, so that it is not still talking to the demo's keyring when that stops.
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
}
cleanup() { stop_agent; [ -n "${TESTBED_PID:-}" ] && kill "$TESTBED_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

IDP_MODE=()
case "${LANYARD_DEMO_IDP:-oidc}" in
  oidc) ;;
  saml) IDP_MODE=(--saml); echo "demo: the IdP speaks SAML 2.0 (LANYARD_DEMO_IDP=saml)." ;;
  *) echo "demo: LANYARD_DEMO_IDP must be oidc or saml" >&2; exit 2 ;;
esac
"$BIN/lanyard-testbed" serve --demo --oauth-server --dpop tickets "${IDP_MODE[@]}" --write-policy "$WORK/policy.json" >"$WORK/testbed.log" 2>&1 &
TESTBED_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/policy.json" ] && break; sleep 0.1; done
[ -s "$WORK/policy.json" ] || { cat "$WORK/testbed.log"; echo "demo: the testbed did not start" >&2; exit 1; }
cat "$WORK/testbed.log"
echo

export LANYARD_POLICY="$WORK/policy.json"
export PATH="$BIN:$PATH"
# The demo's own broker socket, so it never meets a real agent of this user.
export LANYARD_AGENT_SOCKET="$WORK/agent.sock"
# And its own state (the per-server usage counts), so runs start fresh and leave nothing behind.
export XDG_STATE_HOME="$WORK/state"

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${LANYARD_DEMO_MODE:-tray}" = "tray" ]; then
  if [ "${LANYARD_DEMO_BROWSER:-system}" != "system" ]; then
    export BROWSER="lanyard-testbed browse --user alice@example.com"
    echo "demo: a scripted browser will sign in as alice@example.com when you click Sign in."
  else
    echo "demo: click Sign in in the Lanyard window (or in its tray menu); the dev IdP's login page"
    echo "      opens in your browser — pick alice (Payroll is blocked for her) or bob."
  fi
  echo "demo: meanwhile, in another terminal: LANYARD_AGENT_SOCKET=$LANYARD_AGENT_SOCKET $BIN/lanyard token docs"
  echo "demo: quit with the tray menu's \"Quit Lanyard\" (or Ctrl-C here)."
  if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ "${LANYARD_DEMO_KEYRING:-}" != "private" ]; then
    lanyard-tray --show
  else
    # No desktop session bus: a private one with an unlocked gnome-keyring for the demo's length.
    scripts/with-keyring.sh lanyard-tray --show 2> >(grep -v 'fd limit' >&2)
  fi
  exit
fi
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "demo: no display, so no tray app — running the headless agent flow with the CLI instead."
fi
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
  echo; echo "\$ lanyard token tickets   (DPoP-bound: only through the proxy)"
  lanyard token tickets || echo "(exit $? — bound to this device's key)"
  tickets_url="$(lanyard servers | awk '$1 == "tickets" { print $NF }')"
  echo; echo "\$ lanyard token tickets --json --dpop POST $tickets_url  (shortened)"
  lanyard token tickets --json --dpop POST "$tickets_url" \
    | sed -E 's/("(access_token|dpop_proof)":"[^"]{12})[^"]*/\1…/g'
  echo; echo "\$ lanyard connect wiki   (standard MCP authorization: its own sign-in, once)"
  lanyard connect wiki
  echo; echo "\$ lanyard token wiki --json  (token shortened)"
  lanyard token wiki --json | sed -E 's/("access_token":"[^"]{12})[^"]*/\1…/'
  echo; echo "\$ lanyard token payroll"
  lanyard token payroll || echo "(exit $? — blocked by policy, as configured)"
  echo; echo "\$ lanyard logout";     lanyard logout
  stop_agent
}
export WORK
export -f run_flow stop_agent
if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && [ "${LANYARD_DEMO_KEYRING:-}" != "private" ]; then
  run_flow
else
  # No desktop session: a private, unlocked gnome-keyring holds the session for the demo's length.
  scripts/with-keyring.sh bash -c run_flow 2> >(grep -v 'fd limit' >&2)
fi
