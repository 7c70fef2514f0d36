# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables here are read by the scripts that source this file.
# What every packaging script shares: where the inputs are (binaries, icons, deploy/ files), the
# version, and where packages land. Sourced, never run. Every knob is an environment variable so the
# test (scripts/package/test.sh) can build the same packages from debug binaries at a higher version.
#
#   LANYARD_PKG_VERSION   package version (default: [workspace.package] version in Cargo.toml)
#   LANYARD_PKG_PROFILE   cargo profile whose binaries are packaged: release (default) or debug
#   LANYARD_PKG_OUT       where the .deb/.rpm/.msi land (default: target/packages)
#   LANYARD_PKG_FAST=1    fastest compression (tests); default: xz for .deb/.rpm, MSI's own cab
#   LANYARD_SIGN_PFX      a PKCS#12 code-signing certificate: the .exe files and the .msi are
#                         Authenticode-signed with it (osslsigncode); LANYARD_SIGN_PASS is its password
#   LANYARD_ICONS_DIR     the app icons (default: icons/; icon.png is the 128x128 app icon)

PKG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PKG_NAME=lanyard
PKG_SUMMARY="Enterprise sign-in agent for AI tools (MCP Enterprise-Managed Authorization)"
PKG_DESCRIPTION="Lanyard signs the user in to the corporate identity provider once and hands every
MCP server the company configured its own token (ID-JAG token exchange + jwt-bearer), through a
per-user agent, a token helper and a stdio proxy for AI clients. The tray app shows each server's
state. The policy is /etc/lanyard/policy.json (example and JSON Schema in /etc/lanyard/)."
PKG_LICENSE="Apache-2.0"
# Placeholder maintainer (dpkg requires the field); replace with the team's address before shipping.
PKG_MAINTAINER="Lanyard maintainers <packages@example.com>"

PKG_PROFILE="${LANYARD_PKG_PROFILE:-release}"
PKG_OUT="${LANYARD_PKG_OUT:-$PKG_ROOT/target/packages}"
PKG_FAST="${LANYARD_PKG_FAST:-0}"
ICONS_DIR="${LANYARD_ICONS_DIR:-$PKG_ROOT/icons}"
DEPLOY_DIR="$PKG_ROOT/deploy"
LINUX_BIN_DIR="$PKG_ROOT/target/$PKG_PROFILE"
WIN_TARGET=x86_64-pc-windows-gnu
WIN_BIN_DIR="$PKG_ROOT/target/$WIN_TARGET/$PKG_PROFILE"

pkg_die() { printf 'package: ERROR: %s\n' "$*" >&2; exit 1; }
pkg_say() { printf 'package: %s\n' "$*" >&2; }

# The workspace version: the first `version = "…"` inside [workspace.package].
workspace_version() {
  awk '
    /^\[/ { in_pkg = ($0 == "[workspace.package]") }
    in_pkg && /^version[[:space:]]*=/ { gsub(/.*=[[:space:]]*"|".*/, ""); print; exit }
  ' "$PKG_ROOT/Cargo.toml"
}
PKG_VERSION="${LANYARD_PKG_VERSION:-$(workspace_version)}"
[ -n "$PKG_VERSION" ] || pkg_die "no [workspace.package] version in Cargo.toml"
# .deb, .rpm and .msi all accept MAJOR.MINOR.PATCH; the MSI compares only these three fields.
[[ "$PKG_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  pkg_die "version '$PKG_VERSION' is not MAJOR.MINOR.PATCH (the .msi needs three numbers)"

# Timestamps inside the packages: the last commit's time (reproducible builds convention).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$PKG_ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}"

need_file() { [ -f "$1" ] || pkg_die "missing $1${2:+ ($2)}"; }
need_tool() { command -v "$1" >/dev/null || pkg_die "missing tool $1 (Debian package $2: scripts/install-deps.sh)"; }

# Stages the Linux file tree shared by the .deb and the .rpm into $1 (which must not exist).
# Binaries are stripped copies; nothing under /etc/lanyard/policy.json is ever staged: the admin's
# policy must not belong to the package, so upgrades and removal leave it alone.
stage_linux_tree() {
  local dest="$1"
  local cli="$LINUX_BIN_DIR/lanyard" tray="$LINUX_BIN_DIR/lanyard-tray" status="$LINUX_BIN_DIR/lanyard-status"
  need_file "$cli" "cargo build --profile $PKG_PROFILE -p lanyard-cli"
  need_file "$tray" "cargo build --profile $PKG_PROFILE -p lanyard-tray"
  need_file "$status" "cargo build --profile $PKG_PROFILE -p lanyard-status"
  need_file "$ICONS_DIR/icon.png" "the 128x128 app icon"
  need_tool strip binutils
  mkdir -p "$dest"
  install -D -m 0755 "$cli" "$dest/usr/bin/lanyard"
  # The tray (no webview) and the status window it starts (Tauri/WebKit), side by side.
  install -D -m 0755 "$tray" "$dest/usr/bin/lanyard-tray"
  install -D -m 0755 "$status" "$dest/usr/bin/lanyard-status"
  strip --strip-unneeded "$dest/usr/bin/lanyard" "$dest/usr/bin/lanyard-tray" "$dest/usr/bin/lanyard-status"
  # The agent: a systemd user unit, started for every user by the vendor symlink next to it, as
  # Debian ships ssh-agent (no [Install], no maintainer script; `systemctl --global mask` opts out).
  install -D -m 0644 "$DEPLOY_DIR/linux/lanyard-agent.service" "$dest/usr/lib/systemd/user/lanyard-agent.service"
  mkdir -p "$dest/usr/lib/systemd/user/default.target.wants"
  ln -s ../lanyard-agent.service "$dest/usr/lib/systemd/user/default.target.wants/lanyard-agent.service"
  # The tray: a menu entry (named after the app id, so desktops match its window to it) and an XDG
  # autostart entry named like the one the tray's own "start at login" writes (~/.config/autostart/
  # Lanyard.desktop), so a user's entry of that name replaces the system one instead of doubling it.
  install -D -m 0644 "$DEPLOY_DIR/linux/lanyard-tray.desktop" "$dest/usr/share/applications/dev.lanyard.tray.desktop"
  install -D -m 0644 "$DEPLOY_DIR/linux/lanyard-autostart.desktop" "$dest/etc/xdg/autostart/Lanyard.desktop"
  install -D -m 0644 "$ICONS_DIR/icon.png" "$dest/usr/share/icons/hicolor/128x128/apps/lanyard.png"
  # /etc/lanyard: the example policy and the schema (config files of the package), and the drop-in
  # folder. policy.json itself is the administrator's.
  install -D -m 0644 "$DEPLOY_DIR/linux/policy.json" "$dest/etc/lanyard/policy.example.json"
  install -D -m 0644 "$DEPLOY_DIR/policy.schema.json" "$dest/etc/lanyard/policy.schema.json"
  install -d -m 0755 "$dest/etc/lanyard/policy.d"
  # Puts an employee's client key into the TPM (docs: the administrator's "Client keys" page).
  install -D -m 0755 "$DEPLOY_DIR/linux/provision-pkcs11-token.sh" "$dest/usr/share/lanyard/provision-pkcs11-token.sh"
  install -D -m 0644 /dev/stdin "$dest/usr/share/doc/$PKG_NAME/copyright" <<EOF
Lanyard $PKG_VERSION
License: $PKG_LICENSE (see /usr/share/common-licenses/Apache-2.0 on Debian systems).
Administrator's guide: /usr/share/doc/$PKG_NAME/README.md
EOF
  install -D -m 0644 "$PKG_ROOT/README.md" "$dest/usr/share/doc/$PKG_NAME/README.md"
  # Same inputs, same archive: every file dated by the last commit, not by the build.
  find "$dest" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# The files of a staged tree that are the package's configuration (everything under /etc that is a
# regular file), one absolute path per line.
staged_conffiles() {
  (cd "$1" && find etc -type f | sort | sed 's|^|/|')
}
