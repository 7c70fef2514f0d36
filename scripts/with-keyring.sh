#!/usr/bin/env bash
# Run a command against a real, fresh, unlocked Secret Service (gnome-keyring) on a private D-Bus
# session bus. Nothing touches the user's own keyring or session.
#
#   scripts/with-keyring.sh cargo nextest run -p lanyard-keyring
#   scripts/with-keyring.sh secret-tool lookup service x
#
# What the child gets:
#   DBUS_SESSION_BUS_ADDRESS  private bus (from dbus-run-session)
#   XDG_DATA_HOME             fresh temp dir holding the keyrings (login keyring = default collection)
#   XDG_RUNTIME_DIR           fresh temp dir (0700) for the daemon's sockets
#   LANYARD_TEST_KEYRING=1    marker: a real, unlocked Secret Service is available
#   LANYARD_TEST_KEYRING_PASSWORD  the keyring password (test-pass, or $KEYRING_PASSWORD)
# The exit status is the command's. The daemon and the temp dirs are removed afterwards.
# Needs: dbus (dbus-run-session, dbus-send), gnome-keyring — scripts/install-deps.sh installs them.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi

if [ "${_LANYARD_IN_KEYRING_BUS:-}" != "$$" ]; then
  command -v dbus-run-session >/dev/null || { echo "with-keyring: dbus-run-session missing (apt: dbus)" >&2; exit 2; }
  command -v gnome-keyring-daemon >/dev/null || { echo "with-keyring: gnome-keyring-daemon missing (apt: gnome-keyring)" >&2; exit 2; }
  # Re-run this script inside a private session bus; the marker stops a second re-exec.
  # shellcheck disable=SC2016 # expanded by the inner bash (its own $$), not by this one.
  exec dbus-run-session -- bash -c '_LANYARD_IN_KEYRING_BUS=$$ exec bash "$0" "$@"' "$0" "$@"
fi

tmp="$(mktemp -d -t lanyard-keyring.XXXXXX)"
export XDG_DATA_HOME="$tmp/data"
export XDG_RUNTIME_DIR="$tmp/run"
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
password="${KEYRING_PASSWORD:-test-pass}"

daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# --unlock reads the password from stdin and creates/unlocks the "login" keyring, which becomes
# the default collection. --foreground so that we own its pid.
printf '%s' "$password" | gnome-keyring-daemon --foreground --unlock --components=secrets \
  >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!

# Wait (max ~5 s) until the daemon owns org.freedesktop.secrets on our bus.
for _ in $(seq 50); do
  if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null |
      grep -q 'boolean true'; then
    break
  fi
  kill -0 "$daemon_pid" 2>/dev/null || { echo "with-keyring: gnome-keyring-daemon exited:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }
  sleep 0.1
done
dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
  org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true' ||
  { echo "with-keyring: Secret Service did not appear on the session bus" >&2; cat "$tmp/daemon.log" >&2; exit 1; }

export LANYARD_TEST_KEYRING=1
export LANYARD_TEST_KEYRING_PASSWORD="$password"
unset _LANYARD_IN_KEYRING_BUS

set +e
"$@"
status=$?
set -e
exit "$status"
