#!/usr/bin/env bash
# Creates (once) the private Wine prefix Lanyard's Windows binaries run in, and installs into it:
# - the ProcessPrng shim Wine 8 needs for Rust >= 1.78 binaries (scripts/wine/processprng.c, built
#   with mingw into system32\bcryptprimitives.dll; without it every Rust .exe exits at load);
# - record-url.exe (scripts/wine/record-url.c) in C:\windows, on the default PATH: the end-to-end
#   test's "browser", which only writes the URL it is given to %LANYARD_BROWSER_LOG%.
# Idempotent: a second run only checks (the stamp holds the Wine version and the sources' hash).
#
#   scripts/wine/prefix.sh              create/check the prefix, print nothing but progress
#   scripts/wine/prefix.sh --print-env  also print the `export …` lines a caller should eval
#
# Environment: LANYARD_WINEPREFIX (default .tools/wine-prefix), LANYARD_WINE (default Debian's
# /usr/lib/wine/wine64). Needs Debian's wine64 and gcc-mingw-w64-x86-64 (scripts/install-deps.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/wine/env.sh
. "$HERE/env.sh"

die() { echo "wine prefix: $*" >&2; exit 1; }
[ -x "$WINE" ] || die "no Wine loader at $WINE (install Debian's wine64: scripts/install-deps.sh)"
command -v x86_64-w64-mingw32-gcc >/dev/null ||
  die "no x86_64-w64-mingw32-gcc (install Debian's gcc-mingw-w64-x86-64: scripts/install-deps.sh)"

SYS32="$WINEPREFIX/drive_c/windows/system32"
DLL="$SYS32/bcryptprimitives.dll"
RECORDER="$WINEPREFIX/drive_c/windows/record-url.exe"
# What the prefix was made from: the Wine version and the C sources. A change rebuilds both.
STAMP="$WINEPREFIX/.lanyard-prefix"
want="$("$WINE" --version) $(cat "$HERE/processprng.c" "$HERE/record-url.c" | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$DLL" ] && [ -f "$RECORDER" ] && [ -f "$WINEPREFIX/system.reg" ]; then
  echo "wine prefix: $WINEPREFIX is ready" >&2
else
  start=$(date +%s%N)
  mkdir -p "$(dirname "$WINEPREFIX")"
  if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "wine prefix: creating $WINEPREFIX (wineboot, 10–20 s)…" >&2
    # No display is needed or wanted: console programs only.
    env -u DISPLAY -u WAYLAND_DISPLAY "$WINE" wineboot --init >/dev/null 2>&1 ||
      die "wineboot failed in $WINEPREFIX"
    "$WINESERVER" -w
    [ -f "$WINEPREFIX/system.reg" ] || die "wineboot left no registry in $WINEPREFIX"
  fi
  [ -d "$SYS32" ] || die "$SYS32 is missing after wineboot"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  x86_64-w64-mingw32-gcc -shared -O2 -s -Wl,--no-insert-timestamp \
    -o "$tmp/bcryptprimitives.dll" "$HERE/processprng.c" -ladvapi32 ||
    die "building the ProcessPrng shim failed"
  x86_64-w64-mingw32-gcc -municode -O2 -s -Wl,--no-insert-timestamp \
    -o "$tmp/record-url.exe" "$HERE/record-url.c" || die "building record-url.exe failed"
  install -m 0644 "$tmp/bcryptprimitives.dll" "$DLL"
  install -m 0755 "$tmp/record-url.exe" "$RECORDER"
  printf '%s\n' "$want" >"$STAMP"
  ms=$((($(date +%s%N) - start) / 1000000))
  printf 'wine prefix: ready in %d.%d s (%s)\n' $((ms / 1000)) $((ms % 1000 / 100)) "$WINEPREFIX" >&2
fi

if [ "${1:-}" = "--print-env" ]; then
  for v in WINEPREFIX WINEARCH WINEDEBUG WINEDLLOVERRIDES WINE WINESERVER; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
fi
