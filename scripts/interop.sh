#!/usr/bin/env bash
# The interop suite (tests/interop): a real `lanyard agent` against pinned real peers — npm
# oidc-provider (+ our ID-JAG grant), PyPI fastmcp and Authlib authorization servers, FastMCP
# servers — driven by real AI clients (Python MCP SDK, MCP Inspector CLI, Claude Code, Gemini CLI,
# Codex CLI, plain HTTP), with the agent's secrets in a real Secret Service (scripts/with-keyring.sh).
# Prints `N passed, M failed`; exits non-zero on any failure.
#
#   scripts/interop.sh          # install what is missing (SKIP_APT=1 install-deps), build, run
#   INTEROP_NO_INSTALL=1 ...    # skip the install step (make interop has run install-deps already)
#   scripts/interop.sh --keep   # keep the scratch folder (every process's log) even when green
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${INTEROP_NO_INSTALL:-0}" != "1" ]; then
  SKIP_APT=1 scripts/install-deps.sh
fi
${CARGO:-cargo} build -q -p lanyard-cli --bin lanyard
# The agent keeps its secrets (the session, the `oauth` connections) in a real Secret Service: a
# fresh gnome-keyring on a private D-Bus session bus, gone afterwards.
# (dbus-daemon's harmless "Failed to set fd limit" is dropped.)
exec scripts/with-keyring.sh .tools/interop/py/bin/python tests/interop/run.py "$@" \
  2> >(grep -v 'fd limit' >&2)
