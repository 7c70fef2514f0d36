#!/usr/bin/env bash
# `make package`: release builds of the Linux and Windows binaries, then the .deb, .rpm and .msi
# side by side in target/packages/ (LANYARD_PKG_OUT). The knobs are in scripts/package/common.sh
# (LANYARD_SIGN_PFX + LANYARD_SIGN_PASS: the Windows binaries and the .msi are Authenticode-signed).
set -euo pipefail
# shellcheck source=scripts/package/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$PKG_ROOT"
CARGO="${CARGO:-cargo}"

[ "$PKG_PROFILE" = release ] || [ "$PKG_PROFILE" = debug ] || pkg_die "LANYARD_PKG_PROFILE must be release or debug"
profile_flag=(); [ "$PKG_PROFILE" = release ] && profile_flag=(--release)

here="$(dirname "${BASH_SOURCE[0]}")"
# Only this version's packages in the folder, so "the packages" is unambiguous.
mkdir -p "$PKG_OUT"
rm -f "$PKG_OUT"/lanyard_*.deb "$PKG_OUT"/lanyard-*.rpm "$PKG_OUT"/Lanyard-*.msi

# Linux first, so a failing Windows build still leaves the .deb and .rpm.
t0=$(date +%s)
pkg_say "building the Linux binaries ($PKG_PROFILE): lanyard, lanyard-tray, lanyard-status"
"$CARGO" build "${profile_flag[@]}" -p lanyard-cli -p lanyard-tray -p lanyard-status
t1=$(date +%s)
"$here/deb.sh" >/dev/null
"$here/rpm.sh" >/dev/null
t2=$(date +%s)
win_pkgs=(-p lanyard-cli -p lanyard-tray -p lanyard-status)
pkg_say "building the Windows binaries ($PKG_PROFILE, $WIN_TARGET): ${win_pkgs[*]}"
"$CARGO" build "${profile_flag[@]}" --target "$WIN_TARGET" "${win_pkgs[@]}"
t3=$(date +%s)
"$here/msi.sh" >/dev/null
t4=$(date +%s)

pkg_say "done: Linux build $((t1 - t0)) s, .deb + .rpm $((t2 - t1)) s, Windows build $((t3 - t2)) s, .msi $((t4 - t3)) s; in $PKG_OUT:"
(cd "$PKG_OUT" && stat -c '%n %s' lanyard_*.deb lanyard-*.rpm Lanyard-*.msi | awk '{printf "  %-36s %6.1f MiB\n", $1, $2 / 1048576}') >&2
