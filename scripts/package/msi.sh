#!/usr/bin/env bash
# Builds Lanyard-<version>-x64.msi into $LANYARD_PKG_OUT with wixl (Debian's wixl, from msitools)
# from deploy/windows/lanyard.wxs: lanyard.exe, lanyard-tray.exe and lanyard-status.exe, the HKLM
# Run entry for the tray, %ProgramData%\Lanyard with a protected DACL, and the ADMX/ADML under
# PolicyDefinitions\. The Windows binaries come from target/x86_64-pc-windows-gnu/<profile>/
# (LANYARD_MSI_BIN_DIR overrides, e.g. to prove the installer with another build).
# With LANYARD_SIGN_PFX (a PKCS#12 code-signing certificate and key) and LANYARD_SIGN_PASS (its
# password), osslsigncode Authenticode-signs the three .exe before they go into the .msi, then the
# .msi itself (SHA-256; LANYARD_SIGN_TIMESTAMP_URL adds an RFC 3161 timestamp). The password never
# appears on a command line (osslsigncode -readpass reads it from a 0600 file). Prints the path.
set -euo pipefail
# shellcheck source=scripts/package/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_tool wixl wixl
need_tool x86_64-w64-mingw32-strip binutils-mingw-w64-x86-64
sign_pfx="${LANYARD_SIGN_PFX:-}"
if [ -n "$sign_pfx" ]; then
  need_tool osslsigncode osslsigncode
  need_file "$sign_pfx" "LANYARD_SIGN_PFX: the code-signing certificate"
  [ -n "${LANYARD_SIGN_PASS+set}" ] || pkg_die "LANYARD_SIGN_PFX is set but LANYARD_SIGN_PASS is not"
fi

bin_dir="${LANYARD_MSI_BIN_DIR:-$WIN_BIN_DIR}"
exes=(lanyard.exe lanyard-tray.exe lanyard-status.exe)

work="$(mktemp -d "${TMPDIR:-/tmp}/lanyard-msi.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# wixl resolves Source= relative to the working directory (absolute paths are not accepted), so
# the inputs are laid out under one folder and wixl runs there.
mkdir -p "$work/bin" "$work/deploy/windows/en-US"
for exe in "${exes[@]}"; do
  need_file "$bin_dir/$exe" "cargo build --target $WIN_TARGET --profile $PKG_PROFILE"
  cp "$bin_dir/$exe" "$work/bin/$exe"
done
x86_64-w64-mingw32-strip --strip-unneeded "${exes[@]/#/$work/bin/}"

# sign FILE: Authenticode-signs FILE in place (the .exe before packaging, the .msi after).
sign() {
  local ts=()
  [ -n "${LANYARD_SIGN_TIMESTAMP_URL:-}" ] && ts=(-ts "$LANYARD_SIGN_TIMESTAMP_URL")
  osslsigncode sign -pkcs12 "$sign_pfx" -readpass "$work/sign-pass" -h sha256 \
    -n "Lanyard" "${ts[@]}" \
    -in "$1" -out "$1.signed" >"$work/sign.log" 2>&1 || pkg_die "osslsigncode failed on $(basename "$1"): $(cat "$work/sign.log")"
  mv "$1.signed" "$1"
}
if [ -n "$sign_pfx" ]; then
  (umask 077 && printf '%s' "$LANYARD_SIGN_PASS" >"$work/sign-pass")
  for exe in "${exes[@]}"; do sign "$work/bin/$exe"; done
fi
cp "$DEPLOY_DIR/windows/lanyard.admx" "$work/deploy/windows/"
cp "$DEPLOY_DIR/windows/en-US/lanyard.adml" "$work/deploy/windows/en-US/"

# The upgrade rule's exclusive upper bound: this version with its third field plus one.
IFS=. read -r major minor patch <<<"$PKG_VERSION"
version_next="$major.$minor.$((patch + 1))"

mkdir -p "$PKG_OUT"
out="$PKG_OUT/Lanyard-$PKG_VERSION-x64.msi"
(cd "$work" && wixl -a x64 \
  -D "Version=$PKG_VERSION" -D "VersionNext=$version_next" \
  -D BinDir=bin -D DeployDir=deploy \
  -o "$out" "$DEPLOY_DIR/windows/lanyard.wxs") >"$work/wixl.log" 2>&1 ||
  pkg_die "wixl failed: $(cat "$work/wixl.log")"
# wixl prints GLib warnings for attributes it ignores; any is a change in what the .wxs means.
if grep -q 'WARNING\|CRITICAL' "$work/wixl.log"; then
  pkg_die "wixl warned (an attribute in lanyard.wxs is ignored): $(cat "$work/wixl.log")"
fi
[ -n "$sign_pfx" ] && sign "$out"
pkg_say "msi: $out ($(du -h "$out" | cut -f1); signed: $([ -n "$sign_pfx" ] && echo yes || echo no))"
echo "$out"
