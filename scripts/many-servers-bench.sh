#!/usr/bin/env bash
# Issue 13, "many servers on one laptop": a real `lanyard agent` (release) signed in to 10, 100 and
# 500 MCP servers of the testbed. Per size it reports (and passes or fails on nothing; the report
# names each target met or not):
#   - sign-in → every server granted: wall time and the agent's CPU time (utime + stime);
#   - the agent's RSS once granted and at the end, and its peak (VmHWM);
#   - an observation window of WINDOW_SECS (default 150) in which every access token (TOKEN_SECS,
#     default 120) is refreshed about twice: the agent's CPU in the window, the token requests per
#     second the IdP and the authorization servers saw (max, mean over the seconds that had any),
#     and the most requests ever in flight from this agent, against its concurrency cap;
#   - the target: RSS at 500 ≤ 2 × RSS at 10.
# The testbed's own traffic log (`lanyard-testbed serve --traffic-file`) is the source of the
# per-second and in-flight figures: what the servers saw, not what the agent says it did.
# Output: target/artifacts/many-servers-bench/{results.md,results.json,N/…}.
#   SIZES="10 100 500"  TOKEN_SECS=120  WINDOW_SECS=150  PROFILE=release|debug
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${PROFILE:-release}"
SIZES="${SIZES:-10 100 500}"
TOKEN_SECS="${TOKEN_SECS:-120}"
WINDOW_SECS="${WINDOW_SECS:-150}"

if [ "${_MANY_BENCH_INNER:-}" != "1" ]; then
  if [ "$PROFILE" = "release" ]; then release=--release; else release=; fi
  "$CARGO" build -q $release -p lanyard-testbed -p lanyard-cli --bins
  export _MANY_BENCH_INNER=1
  exec scripts/with-keyring.sh "$0" "$@"
fi

BIN="$TARGET/$PROFILE"
OUT="$ROOT/target/artifacts/many-servers-bench"
rm -rf "$OUT"; mkdir -p "$OUT"
WORK="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process, in milliseconds.
cpu_ms() {
  local tick; tick=$(getconf CLK_TCK)
  awk -v t="$tick" '{sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / t)}' "/proc/$1/stat"
}
now_ms() { date +%s%3N; }

for n in $SIZES; do
  run="$WORK/$n"; mkdir -p "$run/etc" "$run/home" "$run/run"; chmod 700 "$run/run"
  echo "== $n servers"
  "$BIN/lanyard-testbed" serve --servers "$n" --token-secs "$TOKEN_SECS" \
    --write-policy "$run/etc/policy.json" --traffic-file "$run/traffic.json" >"$run/testbed.log" 2>&1 &
  testbed=$!; pids+=("$testbed")
  for _ in $(seq 600); do [ -s "$run/etc/policy.json" ] && break; sleep 0.1; done
  [ -s "$run/etc/policy.json" ] || { cat "$run/testbed.log"; echo "many-servers-bench: no testbed" >&2; exit 1; }
  # The effective settings (defaults included), as the agent will run them.
  settings=$("$BIN/lanyard" policy show --policy "$run/etc/policy.json" \
    | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("settings", {})))')
  cap=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("max_concurrency", 0))' "$settings")
  export LANYARD_POLICY="$run/etc/policy.json"
  export BROWSER="$BIN/lanyard-testbed browse --user alice@example.com"
  export HOME="$run/home"
  export LANYARD_AGENT_SOCKET="$run/run/agent.sock"
  export LANYARD_LOG="${LANYARD_LOG:-info}"
  "$BIN/lanyard" agent >"$run/agent.log" 2>&1 &
  agent=$!; pids+=("$agent")
  for _ in $(seq 100); do "$BIN/lanyard" status >/dev/null 2>&1 && break; sleep 0.1; done
  rss_start=$(rss "$agent")
  cpu0=$(cpu_ms "$agent"); t0=$(now_ms)
  "$BIN/lanyard" login --no-start >/dev/null 2>"$run/login.err" || { cat "$run/login.err" "$run/agent.log"; exit 1; }
  granted=0
  for _ in $(seq 1200); do
    granted=$("$BIN/lanyard" status --json | grep -c '"state": "granted"' || true)
    [ "$granted" -ge "$n" ] && break; sleep 0.1
  done
  t1=$(now_ms); cpu1=$(cpu_ms "$agent")
  [ "$granted" -ge "$n" ] || { "$BIN/lanyard" status | tail -n 20; echo "many-servers-bench: $granted of $n granted" >&2; exit 1; }
  rss_granted=$(rss "$agent")
  echo "   all $n granted in $((t1 - t0)) ms; observing ${WINDOW_SECS} s of refreshes"
  sleep "$WINDOW_SECS"
  cpu2=$(cpu_ms "$agent")
  granted_end=$("$BIN/lanyard" status --json | grep -c '"state": "granted"' || true)
  rss_end=$(rss "$agent"); rss_peak=$(hwm "$agent")
  mkdir -p "$OUT/$n"
  # Where the resident memory is: the totals and the largest mappings.
  { grep -E '^(Rss|Pss_Anon|Pss_File|Private_Dirty)' /proc/"$agent"/smaps_rollup
    awk '/^[0-9a-f]+-/ {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[name] += $2} END {for (k in r) print r[k] " kB", k}' \
      /proc/"$agent"/smaps | sort -rn | sed -n 1,8p; } >"$OUT/$n/memory.txt"
  kill -INT "$testbed"; wait "$testbed" 2>/dev/null || true
  kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true
  cp "$run/agent.log" "$OUT/$n/agent.log"
  python3 scripts/many_servers_report.py sample "$run/traffic.json" \
    --servers "$n" --cap "$cap" --token-secs "$TOKEN_SECS" --window-secs "$WINDOW_SECS" \
    --signin-to-granted-ms "$((t1 - t0))" --signin-cpu-ms "$((cpu1 - cpu0))" \
    --window-cpu-ms "$((cpu2 - cpu1))" --settings "$settings" \
    --rss-start-kb "$rss_start" --rss-granted-kb "$rss_granted" --rss-end-kb "$rss_end" \
    --rss-peak-kb "$rss_peak" --granted-end "$granted_end" >"$OUT/$n/sample.json"
done
python3 scripts/many_servers_report.py table "$OUT"/*/sample.json | tee "$OUT/results.md"
