#!/usr/bin/env bash
# `make package-test`: every package is really installed, run, upgraded and removed.
#   .deb  dpkg -i on this machine (root), the installed binaries run, the unit checked by
#         systemd-analyze, the desktop files by desktop-file-validate; an administrator's
#         /etc/lanyard/policy.json survives an upgrade, a removal and a purge byte for byte.
#   .rpm  rpm -i into a scratch root with its own database; the installed binary runs there; the
#         package's file list, config files and requirements; upgrade and erase keep the admin file.
#   .msi  built Authenticode-signed with a throwaway CA (openssl) and checked with osslsigncode verify;
#         msiexec /i … /qn in a private Wine prefix (scripts/wine/prefix.sh) under a private Xvfb
#         display; the installed lanyard.exe runs; the HKLM Run entry names lanyard-tray.exe, whose
#         PE subsystem is GUI (2); %ProgramData%\Lanyard is created and its ACL custom actions ran;
#         the installer starts the tray, the tray starts the agent; a newer .msi stops that agent and
#         the tray it installs starts a new one (one product left), an older one is refused;
#         msiexec /x … /qn stops everything and removes it, and what stays is checked too.
# The packages are built for the test from the debug binaries (the same builds `make test` uses,
# target/debug and target/x86_64-pc-windows-gnu/debug) at two versions: the workspace's and one with
# the third field plus one. LANYARD_PKG_PROFILE=release tests release builds instead.
# The machine is left as found: the package is purged and /etc/lanyard restored, even on failure.
# Prints one line per check and "N passed, M failed"; exits 1 when any check failed.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LANYARD_PKG_PROFILE="${LANYARD_PKG_PROFILE:-debug}"
export LANYARD_PKG_FAST="${LANYARD_PKG_FAST:-1}"
# shellcheck source=scripts/package/common.sh
. "$HERE/common.sh"
set +e
cd "$PKG_ROOT" || exit 1
CARGO="${CARGO:-cargo}"

passed=0
failed=0
ok() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf '  FAIL  %s%s\n' "$1" "${2:+: $2}"; }
# check NAME COMMAND…: the command's success is the check; its output is shown only on failure.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then ok "$name"; else bad "$name" "$(printf '%s' "$out" | tail -n 5)"; fi
}
fatal() { bad "$1" "${2:-}"; summary; }
summary() {
  echo "package-test: $passed passed, $failed failed ($(($(date +%s) - start)) s)"
  [ "$failed" -eq 0 ] || exit 1
  exit 0
}
same_file() { cmp -s "$1" "$2"; }
start=$(date +%s)

v1="$PKG_VERSION"
IFS=. read -r major minor patch <<<"$v1"
v2="$major.$minor.$((patch + 1))"
work="$PKG_ROOT/target/package-test"
rm -rf "$work"
mkdir -p "$work"

# ---- inputs: the binaries (incremental: usually already built by `make test`) --------------------
# debug: the same command as `make build`, so the binaries `make test` built are reused as they are;
# release: the same as `make package` (scripts/package/build.sh).
if [ "$PKG_PROFILE" = release ]; then
  profile_flag=(--release); linux_pkgs=(-p lanyard-cli -p lanyard-tray -p lanyard-status)
else
  profile_flag=(); linux_pkgs=(--workspace --bins)
fi
echo "package-test: building the binaries ($PKG_PROFILE)"
"$CARGO" build "${profile_flag[@]}" "${linux_pkgs[@]}" >"$work/build-linux.log" 2>&1 ||
  fatal "cargo build (Linux)" "$(tail -n 5 "$work/build-linux.log")"
if [ -z "${LANYARD_MSI_BIN_DIR:-}" ]; then
  win_pkgs=(-p lanyard-cli -p lanyard-tray -p lanyard-status)
  "$CARGO" build "${profile_flag[@]}" --target "$WIN_TARGET" "${win_pkgs[@]}" >"$work/build-windows.log" 2>&1 ||
    fatal "cargo build ($WIN_TARGET)" "$(tail -n 5 "$work/build-windows.log")"
fi
# A throwaway code-signing CA and certificate (valid 2 days), so the .msi is built as `make package`
# builds it when given a certificate: LANYARD_SIGN_PFX + LANYARD_SIGN_PASS.
sign_dir="$work/signing"
mkdir -p "$sign_dir"
make_signing_cert() {
  local d="$sign_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
    -subj "/CN=Lanyard package-test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey rsa:2048 -nodes -keyout "$d/signer.key" -out "$d/signer.csr" -subj "/CN=Lanyard package-test signer" &&
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' >"$d/signer.ext" &&
    openssl x509 -req -in "$d/signer.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -out "$d/signer.pem" -days 2 -extfile "$d/signer.ext" &&
    openssl pkcs12 -export -out "$d/signer.pfx" -inkey "$d/signer.key" -in "$d/signer.pem" \
      -certfile "$d/ca.pem" -passout "pass:$sign_pass" &&
    # Another CA, which signed nothing here: verifying against it must fail.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/other-ca.key" -out "$d/other-ca.pem" -days 2 \
      -subj "/CN=Some other CA" -addext "basicConstraints=critical,CA:TRUE"
}
sign_pass="pt-$RANDOM$RANDOM"
make_signing_cert >"$sign_dir/openssl.log" 2>&1 || fatal "throwaway code-signing certificate (openssl)" "$(tail -n 5 "$sign_dir/openssl.log")"
echo "package-test: packaging $v1 and $v2"
for v in "$v1" "$v2"; do
  for kind in deb rpm msi; do
    sign_env=()
    [ "$kind" = msi ] && sign_env=(LANYARD_SIGN_PFX="$sign_dir/signer.pfx" LANYARD_SIGN_PASS="$sign_pass")
    env "${sign_env[@]}" LANYARD_PKG_VERSION="$v" LANYARD_PKG_OUT="$work/$v" "$HERE/$kind.sh" >/dev/null 2>"$work/$kind-$v.log" ||
      fatal "build the .$kind $v" "$(tail -n 5 "$work/$kind-$v.log")"
  done
done
arch="$(dpkg --print-architecture)"
deb1="$work/$v1/lanyard_${v1}_$arch.deb" deb2="$work/$v2/lanyard_${v2}_$arch.deb"
rpm1="$work/$v1/lanyard-$v1-1.x86_64.rpm" rpm2="$work/$v2/lanyard-$v2-1.x86_64.rpm"
msi1="$work/$v1/Lanyard-$v1-x64.msi" msi2="$work/$v2/Lanyard-$v2-x64.msi"
ok "built .deb, .rpm, .msi at $v1 and $v2 ($(du -h "$deb1" "$rpm1" "$msi1" | cut -f1 | paste -sd/))"

# An administrator's policy (valid, with no key files), distinct from anything the package ships.
admin_policy="$work/admin-policy.json"
cat >"$admin_policy" <<'EOF'
{"idp": {"issuer": "https://login.corp.example", "client_id": "lanyard-desktop"},
 "servers": [{"id": "wiki", "display_name": "Wiki", "url": "https://wiki.corp.example/mcp", "client_id": "lanyard-wiki"}],
 "settings": {"max_concurrency": 7}}
EOF
# The installed lanyard reads the admin's file from its default path (no --policy): `policy show`.
# A scratch XDG_CONFIG_HOME keeps this user's own settings out of it.
# (The output is taken whole first: `grep -q` on a pipe would close it early, and lanyard, like any
# Rust program printing with println!, panics on the broken pipe.)
reads_admin_policy() {
  local out
  out="$(env -u LANYARD_POLICY XDG_CONFIG_HOME="$work/no-user-config" "$1" policy show --origins)" || return 1
  grep -q "^settings.max_concurrency  *7  <- /etc/lanyard/policy.json" <<<"$out"
}

# Runs the installed unit's ExecStart the way a user's systemd would (a private XDG_RUNTIME_DIR, no
# keychain here), asks it for `lanyard status` (the admin's server must be listed), stops it with the
# unit's KillSignal and expects a clean exit with the socket removed.
unit_agent_runs() {
  local unit="$1" exec_start rt pid rc status
  exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
  [ "$(sed -n 's/^KillSignal=//p' "$unit")" = SIGTERM ] || { echo "KillSignal is not SIGTERM"; return 1; }
  rt="$(mktemp -d)" && chmod 0700 "$rt"
  # shellcheck disable=SC2086 # ExecStart is a command line: word splitting is the point.
  env -u LANYARD_POLICY -u LANYARD_AGENT_SOCKET XDG_RUNTIME_DIR="$rt" HOME="$rt" LANYARD_NO_KEYCHAIN=1 \
    $exec_start 2>"$rt/agent.log" &
  pid=$!
  for _ in $(seq 50); do [ -S "$rt/lanyard/agent.sock" ] && break; sleep 0.1; done
  status="$(XDG_RUNTIME_DIR="$rt" HOME="$rt" /usr/bin/lanyard status 2>&1)"
  rc=$?
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  local agent_rc=$?
  local sock_left=no
  [ -e "$rt/lanyard/agent.sock" ] && sock_left=yes
  echo "status (exit $rc): $status"; echo "agent exit $agent_rc, socket left: $sock_left"; tail -n 3 "$rt/agent.log"
  rm -rf "$rt"
  [ "$rc" = 0 ] && grep -q 'wiki' <<<"$status" && [ "$agent_rc" = 0 ] && [ "$sock_left" = no ]
}

# ==== .deb, on this machine ==========================================================================
echo "package-test: .deb (dpkg on this machine)"
if [ "$(id -u)" -ne 0 ]; then
  bad ".deb tests" "need root (dpkg -i)"
elif dpkg-query -W -f='${Status}' lanyard 2>/dev/null | grep -q 'installed\|config-files'; then
  bad ".deb tests" "a lanyard package is already on this machine; not touching it (dpkg -P lanyard to run this test)"
else
  # Leave /etc/lanyard as found: set whatever is there aside, put it back at exit.
  etc_backup=""
  if [ -e /etc/lanyard ]; then
    etc_backup="$work/etc-lanyard.orig"
    mv /etc/lanyard "$etc_backup"
  fi
  restore_machine() {
    if dpkg-query -W -f='${Status}' lanyard 2>/dev/null | grep -q 'installed\|config-files'; then
      dpkg --purge lanyard >/dev/null 2>&1
    fi
    rm -rf /etc/lanyard
    [ -n "$etc_backup" ] && mv "$etc_backup" /etc/lanyard
  }
  trap restore_machine EXIT

  check "dpkg -i lanyard $v1" dpkg -i "$deb1"
  check "installed lanyard --version is $v1" sh -c "[ \"\$(/usr/bin/lanyard --version)\" = 'lanyard $v1' ]"
  check "installed lanyard-tray --version" sh -c "/usr/bin/lanyard-tray --version | grep -qx 'lanyard-tray $v1'"
  check "installed lanyard-status --version" sh -c "/usr/bin/lanyard-status --version | grep -qx 'lanyard-status $v1'"
  # The tray process stays small: its executable links no WebKit (the status window's does).
  check "lanyard-tray links no WebKit" sh -c "! readelf -d /usr/bin/lanyard-tray | grep -qi -e webkit -e javascriptcore"
  # --skip-file-checks: the example names key files (/etc/lanyard/keys/…) no test machine has.
  check "lanyard policy validate --skip-file-checks /etc/lanyard/policy.example.json" \
    /usr/bin/lanyard policy validate --skip-file-checks /etc/lanyard/policy.example.json
  check "schema installed = deploy/policy.schema.json" same_file /etc/lanyard/policy.schema.json "$DEPLOY_DIR/policy.schema.json"
  check "the client-key provisioning script is installed, executable" \
    test -x /usr/share/lanyard/provision-pkcs11-token.sh
  check "conffiles: the example, the schema, the autostart entry" sh -c \
    "dpkg-query -W -f='\${Conffiles}\n' lanyard | awk 'NF {print \$1}' | sort | tr '\n' ' ' |
       grep -qx '/etc/lanyard/policy.example.json /etc/lanyard/policy.schema.json /etc/xdg/autostart/Lanyard.desktop '"
  check "/etc/lanyard/policy.json belongs to no package" sh -c "! dpkg -S /etc/lanyard/policy.json"
  check "Depends computed: libwebkit2gtk-4.1-0, libayatana-appindicator3-1" sh -c \
    "dpkg-query -W -f='\${Depends}' lanyard | grep -q 'libwebkit2gtk-4.1-0' && dpkg-query -W -f='\${Depends}' lanyard | grep -q 'libayatana-appindicator3-1'"
  check "every Depends satisfied here (dpkg --audit, apt-get check)" sh -c "[ -z \"\$(dpkg --audit)\" ] && apt-get check -qq"
  unit=/usr/lib/systemd/user/lanyard-agent.service
  if command -v systemd-analyze >/dev/null; then
    # --user verify needs a runtime dir; warnings (unknown keys, …) count as failures.
    check "systemd-analyze --user verify $unit" sh -c \
      "d=\$(mktemp -d) && out=\$(XDG_RUNTIME_DIR=\$d systemd-analyze --user verify $unit 2>&1); rc=\$?; rm -rf \$d; echo \"\$out\"; [ \$rc -eq 0 ] && [ -z \"\$out\" ]"
  else
    bad "systemd-analyze verify" "systemd-analyze not available"
  fi
  # Started for every user by the vendor symlink (like Debian's ssh-agent): "static" to systemctl.
  check "agent unit wanted by every user's default.target (vendor symlink; is-enabled: static)" sh -c \
    "[ \"\$(readlink -f /usr/lib/systemd/user/default.target.wants/lanyard-agent.service)\" = $unit ] &&
     [ \"\$(systemctl --global is-enabled lanyard-agent.service)\" = static ]"
  if command -v desktop-file-validate >/dev/null; then
    check "desktop-file-validate menu + autostart entries" sh -c \
      "out=\$(desktop-file-validate /usr/share/applications/dev.lanyard.tray.desktop /etc/xdg/autostart/Lanyard.desktop 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
  else
    bad "desktop-file-validate" "not available (Debian desktop-file-utils)"
  fi
  check "icon installed" test -s /usr/share/icons/hicolor/128x128/apps/lanyard.png

  install -m 0644 "$admin_policy" /etc/lanyard/policy.json
  check "installed lanyard reads the admin's /etc/lanyard/policy.json" reads_admin_policy /usr/bin/lanyard
  check "the unit's ExecStart: agent serves status on its socket, stops cleanly on SIGTERM" unit_agent_runs "$unit"
  check "dpkg -i lanyard $v2 (upgrade)" dpkg -i "$deb2"
  check "upgraded: version $v2" sh -c "[ \"\$(dpkg-query -W -f='\${Version}' lanyard)\" = '$v2' ]"
  check "admin policy.json survives the upgrade byte for byte" same_file /etc/lanyard/policy.json "$admin_policy"
  check "upgraded lanyard still reads it" reads_admin_policy /usr/bin/lanyard
  check "dpkg -r lanyard" dpkg -r lanyard
  check "removed: binaries, unit, menu entry gone" sh -c \
    "for f in /usr/bin/lanyard /usr/bin/lanyard-tray /usr/bin/lanyard-status $unit /usr/lib/systemd/user/default.target.wants/lanyard-agent.service /usr/share/applications/dev.lanyard.tray.desktop; do [ ! -e \$f ] && [ ! -L \$f ] || { echo \"still there: \$f\"; exit 1; }; done"
  check "admin policy.json survives the removal byte for byte" same_file /etc/lanyard/policy.json "$admin_policy"
  check "dpkg --purge lanyard" dpkg --purge lanyard
  check "purged: shipped config files gone" sh -c "[ ! -e /etc/lanyard/policy.example.json ] && [ ! -e /etc/xdg/autostart/Lanyard.desktop ]"
  check "admin policy.json survives the purge byte for byte" same_file /etc/lanyard/policy.json "$admin_policy"
  restore_machine
  trap - EXIT
  check "machine as found: no lanyard package, /etc/lanyard restored" sh -c \
    "! dpkg-query -W lanyard >/dev/null 2>&1 && { [ -z '$etc_backup' ] && [ ! -e /etc/lanyard ] || [ -d /etc/lanyard ]; }"
fi

# ==== .rpm, into a scratch root ======================================================================
echo "package-test: .rpm (rpm --root into a scratch root)"
root="$work/rpm-root"
mkdir -p "$root"
# Debian's rpm says it should not be used directly; the scratch root is what it is for.
rpmq() { rpm --define '_dbpath /var/lib/rpm' "$@" 2>&1 | grep -v '^rpm: \(RPM should not be used\|However assuming\)'; return "${PIPESTATUS[0]}"; }
check "rpm -qpl: binaries, unit, entries; no policy.json" sh -c \
  "l=\$(rpm -qpl '$rpm1' 2>/dev/null); for f in /usr/bin/lanyard /usr/bin/lanyard-tray /usr/bin/lanyard-status /usr/lib/systemd/user/lanyard-agent.service /usr/share/applications/dev.lanyard.tray.desktop /etc/xdg/autostart/Lanyard.desktop /etc/lanyard/policy.example.json /etc/lanyard/policy.schema.json; do echo \"\$l\" | grep -qx \$f || { echo \"missing \$f\"; exit 1; }; done; ! echo \"\$l\" | grep -qx /etc/lanyard/policy.json"
check "rpm -qpc: shipped /etc files are config" sh -c \
  "[ \"\$(rpm -qpc '$rpm1' 2>/dev/null | tr '\n' ' ')\" = '/etc/lanyard/policy.example.json /etc/lanyard/policy.schema.json /etc/xdg/autostart/Lanyard.desktop ' ]"
check "rpm -qpR: webkit2gtk-4.1 and app indicator by soname" sh -c \
  "r=\$(rpm -qpR '$rpm1' 2>/dev/null); echo \"\$r\" | grep -qx 'libwebkit2gtk-4.1.so.0()(64bit)' && echo \"\$r\" | grep -q 'libayatana-appindicator3.so.1()(64bit)'"
check "rpm --initdb in the scratch root" rpmq --root "$root" --initdb
check "rpm -i --nodeps lanyard $v1" rpmq --root "$root" -i --nodeps "$rpm1"
check "installed (scratch root) lanyard --version is $v1" sh -c "[ \"\$('$root/usr/bin/lanyard' --version)\" = 'lanyard $v1' ]"
check "installed (scratch root) lanyard policy validate --skip-file-checks on the example" \
  "$root/usr/bin/lanyard" policy validate --skip-file-checks "$root/etc/lanyard/policy.example.json"
install -m 0644 "$admin_policy" "$root/etc/lanyard/policy.json"
# A locally edited shipped config file must be kept too (%config(noreplace)).
echo ' ' >>"$root/etc/lanyard/policy.example.json"
cp "$root/etc/lanyard/policy.example.json" "$work/edited-example.json"
check "rpm -U lanyard $v2 (upgrade)" rpmq --root "$root" -U --nodeps "$rpm2"
check "upgraded: exactly lanyard-$v2-1 installed" sh -c \
  "[ \"\$(rpm --define '_dbpath /var/lib/rpm' --root '$root' -qa 2>/dev/null)\" = 'lanyard-$v2-1.x86_64' ]"
check "admin policy.json survives the upgrade byte for byte" same_file "$root/etc/lanyard/policy.json" "$admin_policy"
check "edited example (config noreplace) survives the upgrade" same_file "$root/etc/lanyard/policy.example.json" "$work/edited-example.json"
check "rpm -e lanyard" rpmq --root "$root" -e lanyard
check "erased: binaries and unit gone" sh -c "[ ! -e '$root/usr/bin/lanyard' ] && [ ! -e '$root/usr/bin/lanyard-tray' ] && [ ! -e '$root/usr/bin/lanyard-status' ] && [ ! -e '$root/usr/lib/systemd/user/lanyard-agent.service' ]"
check "admin policy.json survives the erase byte for byte" same_file "$root/etc/lanyard/policy.json" "$admin_policy"

# ==== .msi, under Wine ===============================================================================
echo "package-test: .msi (msiexec under Wine)"
# A prefix of its own: the end-to-end test's prefix never sees an installer.
export LANYARD_WINEPREFIX="${LANYARD_PKG_WINEPREFIX:-$PKG_ROOT/.tools/wine-prefix-packages}"
if [ ! -x "$PKG_ROOT/scripts/wine/prefix.sh" ]; then
  bad ".msi tests" "scripts/wine/prefix.sh is missing (the Wine prefix + ProcessPrng shim; merge the windows branch)"
elif ! "$PKG_ROOT/scripts/wine/prefix.sh" >"$work/wine-prefix.log" 2>&1; then
  bad ".msi tests" "Wine prefix: $(tail -n 3 "$work/wine-prefix.log")"
else
  # shellcheck source=scripts/wine/env.sh
  . "$PKG_ROOT/scripts/wine/env.sh"
  winpath() { printf 'Z:%s' "${1//\//\\}"; }
  exe_dir="$WINEPREFIX/drive_c/Program Files/Lanyard"
  run_key='HKLM\Software\Microsoft\Windows\CurrentVersion\Run'
  # Installed Lanyard products: one "<ProductCode> <DisplayVersion>" line each.
  lanyard_products() {
    "$WINE" reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s 2>/dev/null | tr -d '\r' | awk '
      /^HKEY_/ { key = $0; sub(/.*\\/, "", key); name = ""; ver = "" }
      $1 == "DisplayName" { name = $3 } $1 == "DisplayVersion" { ver = $3 }
      name == "Lanyard" && ver != "" && !seen[key]++ { print key, ver }'
  }
  # The tray is a GUI program: it needs a display (a private Xvfb) to create its icon under Wine,
  # and the Wine session (wineserver, its desktop) must start with that display: stop any first.
  "$WINESERVER" -k >/dev/null 2>&1
  xvfb_pid=""
  if command -v Xvfb >/dev/null; then
    for n in $(seq 90 120); do
      [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] && continue
      Xvfb ":$n" -screen 0 1024x768x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
      xvfb_pid=$!
      for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done
      export DISPLAY=":$n"
      break
    done
  fi
  [ -n "$xvfb_pid" ] || bad "Xvfb for the tray under Wine" "Xvfb is missing (Debian xvfb: scripts/install-deps.sh)"
  # A previous run that died half way: remove what it left.
  lanyard_products | while read -r code _; do "$WINE" msiexec /x "$code" /qn >/dev/null 2>&1; done

  # Authenticode: the .msi and the three .exe inside it, against the throwaway CA; the same files
  # against another CA must fail (so the check can fail).
  signed_by_test_ca() { osslsigncode verify -CAfile "$sign_dir/ca.pem" -in "$1" 2>&1 | grep -q '^Signature verification: ok'; }
  check ".msi signed (osslsigncode verify against the test CA)" signed_by_test_ca "$msi1"
  check ".msi signature not accepted against another CA" sh -c \
    "! osslsigncode verify -CAfile '$sign_dir/other-ca.pem' -in '$msi1' 2>&1 | grep -q '^Signature verification: ok'"
  check ".msi CustomAction table: stop processes, protect %ProgramData%\\Lanyard (icacls), start the tray" sh -c \
    "t=\$(msiinfo export '$msi1' CustomAction) && echo \"\$t\" | grep -q 'StopLanyard.*/F /IM lanyard-tray.exe /IM lanyard-status.exe /IM lanyard.exe' &&
     echo \"\$t\" | grep -q 'ProtectMachineFolderAcl.*/inheritance:r /grant:r \*S-1-5-18:(OI)(CI)F \*S-1-5-32-544:(OI)(CI)F \*S-1-5-32-545:(OI)(CI)RX' &&
     echo \"\$t\" | grep -q 'ProtectMachineFolderOwner.*/setowner \*S-1-5-32-544 /T' && echo \"\$t\" | grep -q 'StartTray'"

  # Intune's uninstall script removes by the .msi's UpgradeCode; its detection reads the value the
  # .msi writes (checked after the install below).
  check "deploy/windows/uninstall-lanyard.ps1 names the .msi's UpgradeCode" sh -c \
    "code=\$(msiinfo export '$msi1' Property | tr -d '\r' | awk -F '\t' '\$1 == \"UpgradeCode\" {print \$2}') &&
     [ -n \"\$code\" ] && grep -qF \"'\$code'\" '$DEPLOY_DIR/windows/uninstall-lanyard.ps1'"
  check "deploy/windows/detect-lanyard.ps1 reads HKLM\\SOFTWARE\\Lanyard\\Installer Version" sh -c \
    "grep -qF \"'HKLM:\\SOFTWARE\\Lanyard\\Installer'\" '$DEPLOY_DIR/windows/detect-lanyard.ps1' && grep -q 'Name Version' '$DEPLOY_DIR/windows/detect-lanyard.ps1'"

  msi_cleanup() {
    lanyard_products | while read -r code _; do "$WINE" msiexec /x "$code" /qn >/dev/null 2>&1; done
    "$WINE" taskkill /F /IM lanyard-tray.exe /IM lanyard-status.exe /IM lanyard.exe >/dev/null 2>&1
    "$WINESERVER" -k >/dev/null 2>&1
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null
  }
  trap msi_cleanup EXIT

  # msiexec with its output in a file: the installer starts the tray, which would otherwise inherit
  # the pipe `check` reads the output from, and keep it open for as long as it runs.
  msiexec_logged() { "$WINE" msiexec "$@" >>"$work/msiexec.log" 2>&1; }
  # The Windows paths under this prefix, as Unix paths.
  user_dir="$(find "$WINEPREFIX/drive_c/users" -mindepth 1 -maxdepth 1 -type d ! -name Public | head -n 1)"
  local_app="$user_dir/AppData/Local/Lanyard"
  data_dir="$WINEPREFIX/drive_c/ProgramData/Lanyard"
  # The tray's first-run marker (its "start at login" default is applied once per user).
  tray_marker_dir="$user_dir/AppData/Roaming/dev.lanyard.tray"
  rm -rf "$local_app" "$data_dir" "$tray_marker_dir"
  "$WINE" reg delete 'HKCU\Software\Microsoft\Windows\CurrentVersion\Run' /v Lanyard /f >/dev/null 2>&1
  # The agent the tray starts reads the machine policy from %ProgramData%\Lanyard\policy.json and
  # keeps the session in memory (Wine has no usable Credential Manager for the tray's children).
  export LANYARD_NO_KEYCHAIN=1
  # Every "agent starting" line (pid) in the agent's log, which the agent writes itself (--log-file).
  agent_pids() { grep -ho 'agent starting pid=[0-9]*' "$local_app"/agent.log* 2>/dev/null | sed 's/.*pid=//'; }
  # Waits until an agent answers `lanyard status` and a pid other than $1 started; prints that pid.
  wait_for_new_agent() {
    local old="$1" pid
    for _ in $(seq 150); do
      pid="$(agent_pids | tail -n 1)"
      if [ -n "$pid" ] && [ "$pid" != "$old" ] &&
        "$WINE" 'C:\Program Files\Lanyard\lanyard.exe' status >/dev/null 2>&1; then
        echo "$pid"; return 0
      fi
      sleep 0.2
    done
    echo "no new agent (log: $(tail -n 3 "$local_app/agent.log" 2>/dev/null))"; return 1
  }
  # Unix pids of the Wine processes running an installed Lanyard exe (Wine shows the Windows
  # command line as the process's argv).
  unix_pids_of() { pgrep -f "Program Files.Lanyard.$1" || true; }
  # (Functions, not `sh -c`: pgrep -f would find the pattern in the sh -c command line itself.)
  no_lanyard_processes() {
    local left
    left="$(pgrep -af 'Program Files.Lanyard.lanyard')"
    [ -z "$left" ] || { echo "still running: $left"; return 1; }
  }
  # Every running Lanyard process maps its exe from the installed folder, and none maps a deleted
  # (replaced) one; an agent is among them.
  running_from_installed_files() {
    local pid agent
    agent="$(pgrep -f 'Program Files.Lanyard.lanyard.exe agent')"
    [ -n "$agent" ] || { echo "no agent runs"; return 1; }
    for pid in $(pgrep -f 'Program Files.Lanyard.lanyard'); do
      grep -q 'Program Files/Lanyard/lanyard' "/proc/$pid/maps" || { echo "$pid maps no installed exe"; return 1; }
      if grep -q 'Program Files/Lanyard/lanyard.*(deleted)' "/proc/$pid/maps"; then echo "$pid maps a replaced exe"; return 1; fi
    done
  }
  # PE optional header, Subsystem field: 2 = Windows GUI, 3 = console.
  pe_subsystem() {
    python3 -c 'import struct,sys
d=open(sys.argv[1],"rb").read(4096); e=struct.unpack_from("<I",d,0x3c)[0]
assert d[e:e+4]==b"PE\0\0", "not a PE file"
print(struct.unpack_from("<H",d,e+24+68)[0])' "$1"
  }
  # The exe a Run value names ("C:\…\x.exe" args), as a Unix path in the prefix.
  run_value_exe() {
    local v
    v="$("$WINE" reg query "$run_key" /v "$1" | tr -d '\r' | sed -n 's/.*REG_SZ *//p')"
    v="${v#\"}"; v="${v%%\"*}"
    v="${v#C:}"
    printf '%s/drive_c%s' "$WINEPREFIX" "${v//\\//}"
  }

  check "msiexec /i Lanyard $v1 /qn" msiexec_logged /i "$(winpath "$msi1")" /qn /l*v "$(winpath "$work/msi-install-$v1.log")"
  check "installed C:\\Program Files\\Lanyard\\lanyard.exe --version is $v1" sh -c \
    "[ \"\$('$WINE' 'C:\\Program Files\\Lanyard\\lanyard.exe' --version | tr -d '\r')\" = 'lanyard $v1' ]"
  for exe in lanyard.exe lanyard-tray.exe lanyard-status.exe; do
    check "installed $exe, Authenticode-signed by the test CA" signed_by_test_ca "$exe_dir/$exe"
  done
  check "Run key 'Lanyard Tray': \"…\\lanyard-tray.exe\" --at-login at every sign-in (HKLM)" sh -c \
    "'$WINE' reg query '$run_key' /v 'Lanyard Tray' | tr -d '\r' | grep -qF 'REG_SZ    \"C:\\Program Files\\Lanyard\\lanyard-tray.exe\" --at-login'"
  check "no Run entry starts the console lanyard.exe (the old 'Lanyard Agent')" sh -c \
    "! '$WINE' reg query '$run_key' /v 'Lanyard Agent' >/dev/null 2>&1"
  run_exe="$(run_value_exe 'Lanyard Tray')"
  is_gui() { [ "$(pe_subsystem "$1")" = 2 ]; }
  check "the exe the Run entry names is a GUI-subsystem program (PE Subsystem = 2): $(basename "$run_exe")" is_gui "$run_exe"
  # The check tells the two apart: lanyard.exe (the CLI) is a console program.
  if [ "$(pe_subsystem "$exe_dir/lanyard.exe")" = 3 ] && [ "$(pe_subsystem "$exe_dir/lanyard-status.exe")" = 2 ]; then
    ok "lanyard.exe is a console program (3), lanyard-status.exe a GUI one (2)"
  else
    bad "lanyard.exe console (3), lanyard-status.exe GUI (2)" "$(pe_subsystem "$exe_dir/lanyard.exe") / $(pe_subsystem "$exe_dir/lanyard-status.exe")"
  fi
  check "ADMX/ADML installed in PolicyDefinitions" sh -c \
    "cmp '$exe_dir/PolicyDefinitions/lanyard.admx' '$DEPLOY_DIR/windows/lanyard.admx' && cmp '$exe_dir/PolicyDefinitions/en-US/lanyard.adml' '$DEPLOY_DIR/windows/en-US/lanyard.adml'"
  check "%ProgramData%\\Lanyard created" test -d "$data_dir"
  # Wine's icacls.exe is a stub (it changes nothing and exits 0): the DACL itself cannot be read
  # back here. What Wine shows is that the four icacls steps ran, as LocalSystem, and succeeded.
  check "the icacls custom actions ran and succeeded (msiexec log)" sh -c \
    "for a in ProtectMachineFolderOwner ProtectMachineFolderReset ProtectMachineFolderAcl ProtectMachineFolderOwnerAgain; do
       tr -d '\000\r' <'$work/msi-install-$v1.log' | grep -q \"Action ended .*: \$a. Return value 1.\" || { echo \"\$a did not end with success in the log\"; exit 1; }; done"
  check "HKLM\\Software\\Lanyard\\Installer Version = $v1 (the detection rule's value)" sh -c \
    "'$WINE' reg query 'HKLM\\Software\\Lanyard\\Installer' /v Version | tr -d '\r' | grep -q 'REG_SZ *$v1\$'"
  p="$(lanyard_products)"
  if [ "$(printf '%s\n' "$p" | grep -c .)" = 1 ] && [ "${p##* }" = "$v1" ]; then ok "one Lanyard product, $v1"; else bad "one Lanyard product, $v1"; fi
  code1="${p%% *}"

  # The installer started the tray (StartTray), and the tray started the agent.
  cp "$admin_policy" "$data_dir/policy.json"
  agent1=""
  if agent1="$(wait_for_new_agent none)"; then ok "after install: the tray runs and started the agent (pid $agent1)"; else bad "after install: the tray started the agent" "$agent1"; agent1=""; fi
  tray_unix1="$(unix_pids_of lanyard-tray.exe)"
  agent_unix1="$(unix_pids_of 'lanyard.exe agent')"
  check "the tray started \`lanyard.exe agent --log-file %LOCALAPPDATA%\\Lanyard\\agent.log\` (the agent writes its log)" sh -c \
    "[ -n '$agent_unix1' ] && [ -n '$tray_unix1' ] && tr '\\000' ' ' </proc/$agent_unix1/cmdline | grep -q 'agent --log-file .*Lanyard.agent.log' && grep -q 'agent starting' '$local_app/agent.log'"

  check "msiexec /i Lanyard $v2 /qn (major upgrade)" msiexec_logged /i "$(winpath "$msi2")" /qn
  p="$(lanyard_products)"
  if [ "$(printf '%s\n' "$p" | grep -c .)" = 1 ] && [ "${p##* }" = "$v2" ] && [ "${p%% *}" != "$code1" ]; then
    ok "one Lanyard product left, $v2, a new ProductCode"
  else
    bad "one Lanyard product left, $v2, a new ProductCode" "$p"
  fi
  # A stopped Wine process may take a moment to be reaped after msiexec returns: up to 10 s.
  check "upgrade stopped the old tray and agent (their processes are gone)" sh -c \
    "[ -n '$tray_unix1$agent_unix1' ] || exit 1
     for _ in \$(seq 100); do
       left=''; for pid in $tray_unix1 $agent_unix1; do kill -0 \$pid 2>/dev/null && left=\"\$left \$pid\"; done
       [ -z \"\$left\" ] && exit 0; sleep 0.1
     done
     echo \"still running:\$left\"; exit 1"
  agent2=""
  if agent2="$(wait_for_new_agent "$agent1")"; then ok "after upgrade: a new agent answers (pid $agent2, was $agent1), started by the new tray"; else bad "after upgrade: a new agent answers" "$agent2"; fi
  check "the running agent and tray are the installed $v2 files (mapped, not deleted)" running_from_installed_files
  check "HKLM\\Software\\Lanyard\\Installer Version = $v2" sh -c \
    "'$WINE' reg query 'HKLM\\Software\\Lanyard\\Installer' /v Version | tr -d '\r' | grep -q 'REG_SZ *$v2\$'"
  check "upgraded lanyard.exe runs" sh -c "'$WINE' 'C:\\Program Files\\Lanyard\\lanyard.exe' --version | grep -q '^lanyard '"
  check "older $v1 over $v2 is refused" sh -c "! '$WINE' msiexec /i '$(winpath "$msi1")' /qn >>'$work/msiexec.log' 2>&1"
  p="$(lanyard_products)"
  if [ "${p##* }" = "$v2" ] && [ "$(printf '%s\n' "$p" | grep -c .)" = 1 ]; then ok "still $v2 after the refused downgrade"; else bad "still $v2 after the refused downgrade" "$p"; fi
  # The tray's own first run wrote the user's login item (HKCU Run, "start at login" on by default).
  # (HKCU only: the machine's value has another name, so neither can replace or delete the other.)
  check "the tray wrote the user's login item (HKCU Run Lanyard, --at-login), the machine's is untouched" sh -c \
    "'$WINE' reg query 'HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run' /v Lanyard | tr -d '\r' | grep -q 'lanyard-tray.exe.*--at-login' &&
     ! '$WINE' reg query '$run_key' /v Lanyard >/dev/null 2>&1 && '$WINE' reg query '$run_key' /v 'Lanyard Tray' >/dev/null 2>&1"

  check "msiexec /x Lanyard $v2 /qn" msiexec_logged /x "$(winpath "$msi2")" /qn
  p="$(lanyard_products)"
  check "removed: no product, no files, no HKLM Run entry, no installer key" sh -c \
    "[ -z '$p' ] && [ ! -e '$exe_dir' ] && ! '$WINE' reg query '$run_key' /v 'Lanyard Tray' >/dev/null 2>&1 &&
     ! '$WINE' reg query 'HKLM\\Software\\Lanyard\\Installer' >/dev/null 2>&1"
  check "removal stopped the tray and the agent" no_lanyard_processes
  # What stays (deploy/README.md "Windows: upgrade and uninstall"): the administrator's policy, and
  # the user's own data the installer cannot reach (it runs as SYSTEM; these live in each profile).
  check "stays: %ProgramData%\\Lanyard\\policy.json (the administrator's), byte for byte" same_file "$data_dir/policy.json" "$admin_policy"
  check "stays: %LOCALAPPDATA%\\Lanyard (agent.log)" test -s "$local_app/agent.log"
  check "stays: the user's HKCU Run value (it names a file that no longer exists)" sh -c \
    "'$WINE' reg query 'HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run' /v Lanyard >/dev/null 2>&1"
  check "stays: %APPDATA%\\dev.lanyard.tray (the tray's first-run marker)" test -d "$tray_marker_dir"
  "$WINE" reg delete 'HKCU\Software\Microsoft\Windows\CurrentVersion\Run' /v Lanyard /f >/dev/null 2>&1
  rm -rf "$data_dir" "$local_app" "$tray_marker_dir"
  msi_cleanup
  trap - EXIT
  unset DISPLAY LANYARD_NO_KEYCHAIN
fi

summary
