#!/usr/bin/env bash
# Runs a Windows program under Wine in Lanyard's private prefix (created first if needed):
#   scripts/wine/run.sh target/x86_64-pc-windows-gnu/debug/lanyard.exe status
# Extra Windows environment passes through as usual; stdin/stdout/stderr are the program's.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/prefix.sh" >/dev/null 2>&1 || "$HERE/prefix.sh"
# shellcheck source=scripts/wine/env.sh
. "$HERE/env.sh"
exec "$WINE" "$@"
