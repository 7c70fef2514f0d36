#!/usr/bin/env bash
# `make fuzz`: every libFuzzer target in fuzz/fuzz_targets/ for FUZZ_SECS seconds (default 600),
# at most FUZZ_JOBS (default 2) at once, under `nice -n 19`. Each target starts from its committed
# corpus (fuzz/corpus/<t>/, never written to) and keeps what it finds in fuzz/work/<t>/ (ignored
# by git); a crash lands in fuzz/artifacts/<t>/. Prints per target the seconds run, libFuzzer's
# execution count and the crashes, also written to fuzz/work/summary.tsv.
#
#   make fuzz                                   # all targets, 10 min each
#   FUZZ_SECS=30 FUZZ_TARGETS="jwt policy" make fuzz
#
# Needs the nightly toolchain and cargo-fuzz (scripts/install-deps.sh installs it under
# .tools/cargo-fuzz). Built without a sanitizer (`-s none`): the parsers are safe Rust (no
# `unsafe` outside the Windows FFI module), so AddressSanitizer would only slow the search; debug
# assertions and overflow checks are on (`-a`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${FUZZ_SECS:-600}"
JOBS="${FUZZ_JOBS:-2}"
CARGO_FUZZ="$ROOT/.tools/cargo-fuzz/bin/cargo-fuzz"
[ -x "$CARGO_FUZZ" ] || { echo "fuzz: $CARGO_FUZZ missing: run scripts/install-deps.sh" >&2; exit 1; }
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "fuzz: the nightly toolchain is missing" >&2; exit 1; }

all_targets() { find fuzz/fuzz_targets -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort; }
TARGETS="${FUZZ_TARGETS:-$(all_targets | tr '\n' ' ')}"

echo "fuzz: building ${TARGETS}"
(cd fuzz && nice -n 19 rustup run nightly "$CARGO_FUZZ" fuzz build -s none -a)
BIN="fuzz/target/x86_64-unknown-linux-gnu/release"

run_one() {
  local t="$1"
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  local start=$SECONDS
  # -fork=1 with -ignore_*: a crash is saved and the search goes on for the whole FUZZ_SECS.
  nice -n 19 "$BIN/$t" "fuzz/work/$t" "fuzz/corpus/$t" \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"fuzz/work/$t.log" 2>&1 || true
  local runs crashes
  # Fork mode's status lines start with `#<total executions>:`.
  runs="$(sed -n 's/^#\([0-9]*\): .*/\1/p' "fuzz/work/$t.log" | tail -1)"
  crashes="$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)"
  printf '%s\t%s\t%s\t%s\n' "$t" "$((SECONDS - start))" "${runs:-?}" "$crashes" | tee -a fuzz/work/summary.tsv
}

mkdir -p fuzz/work
printf 'target\tseconds\texecutions\tcrashes\n' >fuzz/work/summary.tsv
running=0
for t in $TARGETS; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz: no target $t" >&2; exit 1; }
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
column -t fuzz/work/summary.tsv
if awk -F'\t' 'NR > 1 && $4 > 0 { bad = 1 } END { exit !bad }' fuzz/work/summary.tsv; then
  echo "fuzz: crashes found: see fuzz/artifacts/ (replay one: $BIN/<target> <file>)" >&2
  exit 1
fi
