#!/usr/bin/env bash
# `make lint`'s non-Rust half: the hosted-runner workflow (.github/workflows/*.yml) through
# actionlint, which also runs shellcheck on every `run:` block, and every shell script under scripts/
# through shellcheck (settings: .shellcheckrc). Any finding fails. Needs .tools/actionlint
# (scripts/install-deps.sh) and Debian's shellcheck.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ACTIONLINT="${ACTIONLINT:-$ROOT/.tools/actionlint/bin/actionlint}"
[ -x "$ACTIONLINT" ] || { echo "lint: no actionlint at $ACTIONLINT (scripts/install-deps.sh)" >&2; exit 2; }
command -v shellcheck >/dev/null || { echo "lint: shellcheck is missing (Debian shellcheck: scripts/install-deps.sh)" >&2; exit 2; }

# -shellcheck names the binary actionlint runs on each run: block (it skips them when none is found).
"$ACTIONLINT" -shellcheck "$(command -v shellcheck)" .github/workflows/*.yml
mapfile -t scripts < <(git ls-files -- 'scripts/*.sh' 'scripts/**/*.sh' 2>/dev/null || find scripts -name '*.sh')
shellcheck -x "${scripts[@]}"
# The macOS package's postinstall (a /bin/sh script without the .sh suffix).
shellcheck -s sh deploy/macos/postinstall
echo "lint: actionlint (.github/workflows: $(find .github/workflows -name '*.yml' | wc -l) file(s)) and shellcheck (${#scripts[@]} scripts) clean"
