# shellcheck shell=bash
# The environment for running Lanyard's Windows binaries under Wine on this Linux machine. Source it
# (`. scripts/wine/env.sh`), then run `scripts/wine/prefix.sh` once to create the prefix, then
# `"$WINE" target/x86_64-pc-windows-gnu/debug/lanyard.exe …`.
#
# It never touches the user's own ~/.wine: the prefix is private to this checkout (.tools/wine-prefix)
# unless LANYARD_WINEPREFIX names another. Debian's wine64 package installs its loader off PATH, so
# WINE points at it (LANYARD_WINE overrides).
_lanyard_wine_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/../.." && pwd)"
export WINEPREFIX="${LANYARD_WINEPREFIX:-$_lanyard_wine_root/.tools/wine-prefix}"
export WINEARCH=win64
export WINEDEBUG=-all
# No Mono/Gecko download prompts while the prefix is created (console programs need neither).
export WINEDLLOVERRIDES="mscoree,mshtml="
export WINE="${LANYARD_WINE:-/usr/lib/wine/wine64}"
if [ -z "${LANYARD_WINESERVER:-}" ]; then
  for _s in /usr/lib/wine/wineserver64 /usr/lib/wine/wineserver; do
    [ -x "$_s" ] && { LANYARD_WINESERVER="$_s"; break; }
  done
fi
export WINESERVER="${LANYARD_WINESERVER:-/usr/lib/wine/wineserver64}"
unset _lanyard_wine_root _s
