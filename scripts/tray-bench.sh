#!/usr/bin/env bash
# Measures the tray app (report numbers; nothing here passes or fails on a threshold):
#   - launch -> tray ready (process start to the "tray ready" log line), 5 runs
#   - window open -> first paint with live data (the window process's "status window painted" log
#     line: from the tray asking for the window to the webview's second frame after the first
#     status), 5 runs, with where the time went (process start, webview built, page load start,
#     status in the page)
#   - the floor: the same, with a page that paints nothing but a static text (LANYARD_STATUS_FLOOR)
#   - RSS with the status window open (the tray process + the window process it starts + their
#     WebKit processes), and after it is closed (the window process has ended: the tray alone)
#   - idle wake-ups per minute with the window closed (context switches of every thread of the
#     app and its children over IDLE_SECS; each wake-up of a sleeping thread is one switch), and
#     which threads woke
# Runs under Xvfb with a private D-Bus + keyring, signed in against the testbed (via `lanyard login`
# to a separately started `lanyard agent`; the tray is its client and is measured without it). Writes target/artifacts/tray-bench/results.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
IDLE_SECS="${IDLE_SECS:-60}"

if [ "${_TRAY_BENCH_INNER:-}" != "1" ]; then
  if [ "${PROFILE:-debug}" = "release" ]; then release=--release; else release=; fi
  "$CARGO" build -q $release -p lanyard-testbed -p lanyard-tray -p lanyard-status -p lanyard-cli --bins
  export _TRAY_BENCH_INNER=1
  exec timeout 900 xvfb-run -a -s '-screen 0 1280x800x24' scripts/with-keyring.sh "$0" "$@" \
    2> >(grep -v -e 'Failed to set fd limit' >&2)
fi

PROFILE="${PROFILE:-debug}"   # PROFILE=release measures an optimised build (cargo build --release)
BIN="$TARGET/$PROFILE"
OUT="$ROOT/target/artifacts/tray-bench"
rm -rf "$OUT"; mkdir -p "$OUT"
WORK="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# The policy in a directory of its own, as /etc/lanyard is: the app watches it for changes.
mkdir -p "$WORK/etc"
"$BIN/lanyard-testbed" serve --demo --write-policy "$WORK/etc/policy.json" >"$WORK/testbed.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/etc/policy.json" ] && break; sleep 0.1; done
export LANYARD_POLICY="$WORK/etc/policy.json"
export BROWSER="$BIN/lanyard-testbed browse --user alice@example.com"
export HOME="$WORK/home"; mkdir -p "$HOME"
export LANYARD_AGENT_SOCKET="$WORK/run/agent.sock"
# The window process (lanyard-status) inherits the tray's stderr: its "painted" line lands in app.log.
export LANYARD_LOG="warn,lanyard_tray=info,lanyard_status=info"
trayer --edge bottom --align right --widthtype request --height 32 --SetDockType true >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

now_ms() { date +%s%3N; }
# Resident memory (kB) of a pid.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# The pid and all its descendants.
family() {
  local all=("$1") i=0
  while [ "$i" -lt "${#all[@]}" ]; do
    # shellcheck disable=SC2013 # the children files hold space-separated pids: words are wanted.
    for c in $(cat /proc/"${all[$i]}"/task/*/children 2>/dev/null); do all+=("$c"); done
    i=$((i + 1))
  done
  echo "${all[@]}"
}
family_rss() { local t=0; for p in $(family "$1"); do t=$((t + $(rss "$p"))); done; echo "$t"; }
# "tid switches" for every thread of the pid and its descendants (voluntary + involuntary).
switches() {
  for p in $(family "$1"); do
    for s in /proc/"$p"/task/*/status; do
      awk -v tid="$(basename "$(dirname "$s")")" '/ctxt_switches/ {n += $2} END {print tid, n + 0}' "$s" 2>/dev/null || true
    done
  done | sort
}
# Switches between two samples, over the threads present in both.
switch_delta() { join "$1" "$2" | awk '{d += $3 - $2} END {print d + 0}'; }
wait_line() { # file pattern timeout_s
  for _ in $(seq $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
stop_app() { kill -TERM "$1" 2>/dev/null || true; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL "$1" 2>/dev/null || true; }

# The agent, as the OS starts it at login; the tray only subscribes to it.
"$BIN/lanyard" agent >"$WORK/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
for _ in $(seq 200); do [ -S "$LANYARD_AGENT_SOCKET" ] && break; sleep 0.1; done

# ---- launch -> tray ready -------------------------------------------------------------------
launch=()
for run in 1 2 3 4 5; do
  log="$WORK/launch-$run.log"
  t0=$(now_ms)
  "$BIN/lanyard-tray" >"$log" 2>&1 &
  app=$!
  wait_line "$log" "tray ready" 30 || { cat "$log"; echo "tray-bench: no 'tray ready'" >&2; exit 1; }
  t1=$(now_ms)
  launch+=($((t1 - t0)))
  stop_app "$app"
  sleep 0.5
done
mapfile -t sorted < <(printf '%s\n' "${launch[@]}" | sort -n)
echo "launch -> tray ready (ms): ${launch[*]} (median ${sorted[2]})"

# ---- steady state: signed in through the agent ------------------------------------------------
"$BIN/lanyard" login --no-start >/dev/null 2>"$WORK/login.err" || { cat "$WORK/login.err"; exit 1; }
"$BIN/lanyard" token docs >/dev/null
"$BIN/lanyard-tray" >"$WORK/app.log" 2>&1 &
app=$!
pids+=("$app")
wait_line "$WORK/app.log" "tray ready" 30
sleep 2

# ---- window open -> first paint with live data --------------------------------------------------
# A second launch asks the running tray to open its window (as a click on "Open status…" does).
close_window() {
  local win
  win=$(xdotool search --onlyvisible --name '^Lanyard$' | sed -n 1p)
  xdotool windowfocus --sync "$win" key Escape
  for _ in $(seq 50); do xdotool search --onlyvisible --name '^Lanyard$' >/dev/null || return 0; sleep 0.1; done
  echo "tray-bench: the window did not close" >&2; exit 1
}
paint=()
for run in 1 2 3 4 5; do
  before=$(grep -c "status window painted" "$WORK/app.log" || true)
  "$BIN/lanyard-tray" >/dev/null 2>&1
  for _ in $(seq 200); do
    [ "$(grep -c "status window painted" "$WORK/app.log" || true)" -gt "$before" ] && break; sleep 0.05
  done
  line=$(grep "status window painted" "$WORK/app.log" | tail -n1 | sed -E 's/\x1b\[[0-9;]*m//g')
  ms=$(echo "$line" | sed -E 's/.*elapsed_ms=([0-9]+).*/\1/')
  paint+=("${ms:-0}")
  echo "  run $run: $(echo "$line" | grep -oE '(elapsed|process|webview|page|status)_ms=-?[0-9]+' | tr '\n' ' ')"
  sleep 1
  [ "$run" -lt 5 ] && { close_window; sleep 1; }
done
mapfile -t psorted < <(printf '%s\n' "${paint[@]}" | sort -n)
echo "window open -> first paint with live data (ms): ${paint[*]} (median ${psorted[2]})"
sleep 3
import -window root "$OUT/window-open.png"
open_app=$(rss "$app"); open_total=$(family_rss "$app")
echo "RSS window open: app ${open_app} kB, app + WebKit ${open_total} kB"

# Close the window the way a keyboard user does: focus it, press Escape.
close_window
sleep 10
closed_app=$(rss "$app"); closed_total=$(family_rss "$app")
echo "RSS window closed: app ${closed_app} kB, app + WebKit ${closed_total} kB"
# Where the closed tray's memory is: the largest mappings (libraries linked but never used show
# up here: the tray process never creates a webview).
awk '/^[0-9a-f]+-/ {name = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[name] += $2} END {for (k in r) print r[k] " kB", k}' \
  /proc/"$app"/smaps | sort -rn | sed -n 1,20p >"$OUT/memory-window-closed.txt"

switches "$app" >"$WORK/s0"; sleep "$IDLE_SECS"; switches "$app" >"$WORK/s1"
threads=$(find /proc/"$app"/task -mindepth 1 -maxdepth 1 | wc -l)
wakeups=$(( $(switch_delta "$WORK/s0" "$WORK/s1") * 60 / IDLE_SECS ))
# Which threads woke, for the record.
join "$WORK/s0" "$WORK/s1" | while read -r tid a b; do
  [ "$b" -gt "$a" ] && echo "  $(cat /proc/*/task/"$tid"/comm 2>/dev/null | sed -n 1p) (tid $tid): $((b - a))"
done >"$OUT/wakers.txt" || true
echo "idle wake-ups/min with the window closed: $wakeups ($threads threads, $(family "$app" | wc -w) processes)"
import -window root "$OUT/window-closed.png"

# ---- the floor: the window process showing a static page (no app, no data) ------------------------
# Started directly, as the tray starts it (the time it was asked for; GDK_GL=disable, which the tray
# passes on unless the user set GDK_GL), so what is left is the process, GTK, WebKit's processes
# and one trivial page; then ended.
floor=()
for run in 1 2 3 4 5; do
  log="$WORK/floor-$run.log"
  GDK_GL="${GDK_GL:-disable}" LANYARD_STATUS_FLOOR=1 LANYARD_WINDOW_ASKED_AT=$(now_ms) "$BIN/lanyard-status" >"$log" 2>&1 &
  win=$!
  wait_line "$log" "status window painted" 30 || { cat "$log"; echo "tray-bench: the floor page never painted" >&2; exit 1; }
  line=$(grep "status window painted" "$log" | sed -E 's/\x1b\[[0-9;]*m//g')
  floor+=("$(echo "$line" | sed -E 's/.*elapsed_ms=([0-9]+).*/\1/')")
  echo "  floor run $run: $(echo "$line" | grep -oE '(elapsed|process|webview|page)_ms=-?[0-9]+' | tr '\n' ' ')"
  stop_app "$win"
  sleep 1
done
mapfile -t fsorted < <(printf '%s\n' "${floor[@]}" | sort -n)
echo "window open -> first paint of a static page, the floor (ms): ${floor[*]} (median ${fsorted[2]})"

cat >"$OUT/results.json" <<JSON
{
  "launch_to_tray_ready_ms": [$(IFS=,; echo "${launch[*]}")],
  "launch_to_tray_ready_median_ms": ${sorted[2]},
  "window_open_to_first_paint_ms": [$(IFS=,; echo "${paint[*]}")],
  "window_open_to_first_paint_median_ms": ${psorted[2]},
  "floor_static_page_first_paint_ms": [$(IFS=,; echo "${floor[*]}")],
  "floor_static_page_first_paint_median_ms": ${fsorted[2]},
  "agent_rss_kb": $(rss "$agent"),
  "rss_kb_window_open": {"app": $open_app, "app_and_webkit": $open_total},
  "rss_kb_window_closed": {"app": $closed_app, "app_and_webkit": $closed_total},
  "idle_wakeups_per_min_window_closed": $wakeups,
  "idle_window_secs": $IDLE_SECS,
  "threads": $threads,
  "profile": "$PROFILE"
}
JSON
cat "$OUT/results.json"
echo "threads that woke while idle:"; cat "$OUT/wakers.txt"
