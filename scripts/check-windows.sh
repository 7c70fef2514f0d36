#!/usr/bin/env bash
# Windows compile checks from this Linux machine: clippy (-D warnings) of the whole workspace —
# core, CLI, testbed, tests and the tray app — for x86_64-pc-windows-gnu (mingw-w64 from Debian
# compiles the C parts). Unix-only tests are gated with cfg(unix); the Windows lanyard.exe itself
# is built and run under Wine by `make windows-e2e` (tests/tests/windows_wine.rs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v x86_64-w64-mingw32-gcc >/dev/null || {
  echo "check-windows: x86_64-w64-mingw32-gcc missing: run scripts/install-deps.sh" >&2
  exit 1
}
start=$(date +%s)
"${CARGO:-cargo}" clippy --target x86_64-pc-windows-gnu --workspace --all-targets -- -D warnings
echo "check-windows: clippy clean for x86_64-pc-windows-gnu ($(($(date +%s) - start)) s)"
