#!/usr/bin/env bash
# Builds the Debian package lanyard_<version>_<arch>.deb into $LANYARD_PKG_OUT with dpkg-deb, from
# the tree stage_linux_tree lays out (scripts/package/common.sh). Depends are computed from the
# binaries' ELF NEEDED entries by dpkg-shlibdeps, plus the one library the tray loads at run time
# (dlopen) that no ELF header names. No maintainer scripts: nothing at install time needs one.
# Prints the path of the package.
set -euo pipefail
# shellcheck source=scripts/package/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_tool dpkg-deb dpkg
need_tool dpkg-shlibdeps dpkg-dev

ARCH="$(dpkg --print-architecture)"
work="$(mktemp -d "${TMPDIR:-/tmp}/lanyard-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$work/root"
stage_linux_tree "$tree"

# dpkg-shlibdeps wants a debian/control to read; a two-stanza stub is enough.
mkdir -p "$work/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG_NAME" "$PKG_NAME" >"$work/shlibs/debian/control"
shlibs="$(cd "$work/shlibs" && dpkg-shlibdeps -O "-e$tree/usr/bin/lanyard" "-e$tree/usr/bin/lanyard-tray" "-e$tree/usr/bin/lanyard-status" 2>"$work/shlibdeps.err")" ||
  pkg_die "dpkg-shlibdeps failed: $(cat "$work/shlibdeps.err")"
depends="${shlibs#shlibs:Depends=}"
if [ -z "$depends" ] || [ "$depends" = "$shlibs" ]; then pkg_die "dpkg-shlibdeps printed no Depends: $shlibs"; fi
# The tray icon goes through libayatana-appindicator3 (or the older libappindicator3), which the
# tray crate dlopen()s: no ELF NEEDED entry names it, so dpkg-shlibdeps cannot see it.
depends="$depends, libayatana-appindicator3-1 | libappindicator3-1"

mkdir -p "$tree/DEBIAN"
staged_conffiles "$tree" >"$tree/DEBIAN/conffiles"
installed_kb="$(du -sk --exclude=DEBIAN "$tree" | cut -f1)"
cat >"$tree/DEBIAN/control" <<EOF
Package: $PKG_NAME
Version: $PKG_VERSION
Architecture: $ARCH
Maintainer: $PKG_MAINTAINER
Installed-Size: $installed_kb
Depends: $depends
Recommends: gnome-keyring | keepassxc, xdg-utils
Section: net
Priority: optional
Description: $PKG_SUMMARY
$(printf '%s\n' "$PKG_DESCRIPTION" | sed 's/^/ /')
EOF

if [ "$PKG_FAST" = "1" ]; then compress=(-Zgzip -z1); else compress=(-Zxz -z6); fi
mkdir -p "$PKG_OUT"
out="$PKG_OUT/${PKG_NAME}_${PKG_VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$tree" "$out" >/dev/null
pkg_say "deb: $out ($(du -h "$out" | cut -f1))"
echo "$out"
