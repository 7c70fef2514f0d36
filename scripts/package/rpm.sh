#!/usr/bin/env bash
# Builds lanyard-<version>-1.x86_64.rpm into $LANYARD_PKG_OUT with rpmbuild (Debian's rpm package),
# from the same tree as the .deb (stage_linux_tree in scripts/package/common.sh). Requires are
# rpm's own from the binaries' ELF headers (sonames, so they resolve on any RPM distribution), plus
# the app-indicator library the tray dlopen()s. Shipped files under /etc are %config(noreplace);
# /etc/lanyard/policy.json is not in the package at all. No scriptlets. Prints the package's path.
set -euo pipefail
# shellcheck source=scripts/package/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_tool rpmbuild rpm

work="$(mktemp -d "${TMPDIR:-/tmp}/lanyard-rpm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$work/stage"
stage_linux_tree "$tree"

# %files from the staged tree: directories Lanyard alone owns, /etc files as config, the rest as is.
files="$work/files.list"
{
  echo '%dir /etc/lanyard'
  echo '%dir /etc/lanyard/policy.d'
  echo '%dir /usr/share/doc/lanyard'
  echo '%dir /usr/share/lanyard'
  staged_conffiles "$tree" | sed 's|^|%config(noreplace) |'
  (cd "$tree" && find usr \( -type f -o -type l \) | sort | sed 's|^|/|')
} >"$files"

if [ "$PKG_FAST" = "1" ]; then payload=w1.gzdio; else payload=w6.xzdio; fi
cat >"$work/lanyard.spec" <<EOF
Name:           $PKG_NAME
Version:        $PKG_VERSION
Release:        1
Summary:        $PKG_SUMMARY
License:        $PKG_LICENSE
BuildArch:      x86_64
# The tray icon's library is dlopen()ed, so no ELF header names it: either soname will do.
Requires:       (libayatana-appindicator3.so.1()(64bit) or libappindicator3.so.1()(64bit))
Recommends:     xdg-utils

%description
$PKG_DESCRIPTION

%install
cp -a "$tree/." "%{buildroot}/"

%files -f $files
EOF

mkdir -p "$PKG_OUT"
# Prebuilt, already stripped binaries: no debuginfo subpackage, no build-id links, no brp scripts.
rpmbuild -bb --quiet \
  --define "_topdir $work/top" \
  --define "_rpmdir $work/out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "debug_package %{nil}" \
  --define "__os_install_post %{nil}" \
  --define "_build_id_links none" \
  --define "_binary_payload $payload" \
  --define "_buildhost localhost" \
  --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_date_epoch 1" \
  "$work/lanyard.spec" >"$work/rpmbuild.log" 2>&1 ||
  pkg_die "rpmbuild failed: $(tail -n 20 "$work/rpmbuild.log")"
built="$work/out/$PKG_NAME-$PKG_VERSION-1.x86_64.rpm"
[ -f "$built" ] || pkg_die "rpmbuild left no $built: $(ls -R "$work/out" 2>&1)"
out="$PKG_OUT/$(basename "$built")"
mv "$built" "$out"
pkg_say "rpm: $out ($(du -h "$out" | cut -f1))"
echo "$out"
