#!/usr/bin/env bash
# Measures a headless `lanyard agent` at rest (reports numbers; passes or fails on nothing):
#   - RSS after signing in to N MCP servers (default 10) and idling
#   - wake-ups per minute over an idle window (default 300 s): voluntary + involuntary context
#     switches summed over every thread (/proc/PID/task/*/status); a sleeping thread that wakes
#     costs one switch, so this counts wake-ups
#   - who woke: per thread name, with the count
# Starts the testbed with N servers (`lanyard-testbed serve --servers N`) and signs in with the
# scripted browser (`lanyard-testbed browse`) through `lanyard login`. Uses a private D-Bus and
# keyring (scripts/with-keyring.sh) unless NO_KEYCHAIN=1. Writes
# target/artifacts/agent-idle-bench/PROFILE/results.json.
# Access tokens live TOKEN_SECS (default 3600, a common real lifetime): with the testbed's usual
# 300 s every server refreshes inside the window, and the count then includes that work.
#   PROFILE=release (default) | debug    IDLE_SECS=300    SERVERS=10    TOKEN_SECS=3600
#   STRACE=1: also record every system call of the idle window (strace -f -tt) in strace.txt, to
#   see what woke each thread (the wake-up count is then not taken: ptrace adds switches)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${PROFILE:-release}"
IDLE_SECS="${IDLE_SECS:-300}"
SERVERS="${SERVERS:-10}"
TOKEN_SECS="${TOKEN_SECS:-3600}"

if [ "${_AGENT_BENCH_INNER:-}" != "1" ]; then
  if [ "$PROFILE" = "release" ]; then release=--release; else release=; fi
  # The same packages as tray-bench.sh, so `make tray-bench` builds once (features unify alike).
  "$CARGO" build -q $release -p lanyard-testbed -p lanyard-tray -p lanyard-status -p lanyard-cli --bins
  export _AGENT_BENCH_INNER=1
  if [ "${NO_KEYCHAIN:-}" = "1" ]; then exec "$0" "$@"; fi
  exec scripts/with-keyring.sh "$0" "$@"
fi

BIN="$TARGET/$PROFILE"
OUT="$ROOT/target/artifacts/agent-idle-bench/$PROFILE"
rm -rf "$OUT"; mkdir -p "$OUT"
WORK="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/etc" "$WORK/home" "$WORK/run"
chmod 700 "$WORK/run"
"$BIN/lanyard-testbed" serve --servers "$SERVERS" --token-secs "$TOKEN_SECS" --write-policy "$WORK/etc/policy.json" \
  >"$WORK/testbed.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/etc/policy.json" ] && break; sleep 0.1; done
[ -s "$WORK/etc/policy.json" ] || { cat "$WORK/testbed.log"; echo "agent-idle-bench: no testbed" >&2; exit 1; }
export LANYARD_POLICY="$WORK/etc/policy.json"
export BROWSER="$BIN/lanyard-testbed browse --user alice@example.com"
export HOME="$WORK/home"
export LANYARD_AGENT_SOCKET="$WORK/run/agent.sock"
export LANYARD_LOG="${LANYARD_LOG:-info}"
[ "${NO_KEYCHAIN:-}" = "1" ] && export LANYARD_NO_KEYCHAIN=1

"$BIN/lanyard" agent >"$WORK/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
for _ in $(seq 100); do "$BIN/lanyard" status >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/lanyard" login --no-start >/dev/null 2>"$WORK/login.err" || { cat "$WORK/login.err" "$WORK/agent.log"; exit 1; }
granted=0
for _ in $(seq 100); do
  granted=$("$BIN/lanyard" status --json | grep -c '"state": "granted"' || true)
  [ "$granted" -ge "$SERVERS" ] && break; sleep 0.2
done
[ "$granted" -ge "$SERVERS" ] || { "$BIN/lanyard" status; echo "agent-idle-bench: not all granted" >&2; exit 1; }
for i in $(seq -f '%02g' 1 "$SERVERS"); do "$BIN/lanyard" token "srv$i" >/dev/null; done
echo "signed in; $granted servers granted; settling 10 s, then idling ${IDLE_SECS} s"
sleep 10

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# "tid name switches" for every thread.
switches() {
  for s in /proc/"$1"/task/*/status; do
    awk -v tid="$(basename "$(dirname "$s")")" '/^Name:/ {name = $2} /ctxt_switches/ {n += $2} END {print tid, name, n + 0}' "$s" 2>/dev/null || true
  done | sort
}
switches "$agent" >"$WORK/s0"
rss0=$(rss "$agent")
if [ "${STRACE:-}" = "1" ]; then
  timeout "$IDLE_SECS" strace -f -tt -qq -o "$OUT/strace.txt" -p "$agent" || true
else
  sleep "$IDLE_SECS"
fi
switches "$agent" >"$WORK/s1"
rss1=$(rss "$agent")
threads=$(find /proc/"$agent"/task -mindepth 1 -maxdepth 1 | wc -l)
# Where the resident memory is: the totals and the largest mappings.
{ grep -E '^(Rss|Pss_Anon|Pss_File|Private_Dirty)' /proc/"$agent"/smaps_rollup
  awk '/^[0-9a-f]+-/ {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[name] += $2} END {for (k in r) print r[k] " kB", k}' \
    /proc/"$agent"/smaps | sort -rn | sed -n 1,12p; } >"$OUT/memory.txt"
join "$WORK/s0" "$WORK/s1" | awk '{print $2, $5 - $3}' \
  | awk '{n[$1] += $2} END {for (k in n) print k, n[k]}' | sort -k2,2nr >"$OUT/wakers.txt"
total=$(awk '{t += $2} END {print t + 0}' "$OUT/wakers.txt")
per_min=$(awk -v t="$total" -v s="$IDLE_SECS" 'BEGIN {printf "%.1f", t * 60 / s}')
grep -v -e '"token handed out"' "$WORK/agent.log" | tail -n 40 >"$OUT/agent-log-tail.txt" || true

cat >"$OUT/results.json" <<JSON
{
  "profile": "$PROFILE",
  "servers": $SERVERS,
  "token_secs": $TOKEN_SECS,
  "idle_secs": $IDLE_SECS,
  "rss_kb_start_of_idle": $rss0,
  "rss_kb_end_of_idle": $rss1,
  "wakeups_total": $total,
  "wakeups_per_min": $per_min,
  "threads": $threads,
  "keychain": "$([ "${NO_KEYCHAIN:-}" = "1" ] && echo none || echo secret-service)"
}
JSON
cat "$OUT/results.json"
echo "wake-ups over ${IDLE_SECS} s by thread name:"; sed 's/^/  /' "$OUT/wakers.txt"
echo "resident memory:"; sed 's/^/  /' "$OUT/memory.txt"
