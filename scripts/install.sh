#!/usr/bin/env bash
# Install Floorgate on Debian 12 / Raspberry Pi OS (bookworm) and start it as a systemd service.
#
#   sudo scripts/install.sh                    from a checkout (pip installs this directory)
#   sudo scripts/install.sh --wheel FILE.whl   from a built wheel (offline boxes: add --no-apt and set
#                                              PIP_FIND_LINKS / PIP_NO_INDEX for the dependencies)
#   DESTDIR=/tmp/root scripts/install.sh       lay out the file tree only (packaging, CI): no apt, no user,
#                                              no venv, no systemctl, no chown
#
# Options: --wheel FILE, --no-apt, --no-start, --with-venv (also build the venv under DESTDIR).
# Environment: DESTDIR, PREFIX (default /opt/floorgate), PYTHON (default python3).
# Safe to run again for an upgrade: an existing /etc/floorgate/floorgate.toml is never overwritten.
set -euo pipefail

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/floorgate}
PYTHON=${PYTHON:-python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
WHEEL=""
APT=1
START=1
WITH_VENV=0
SERVICE_USER=floorgate
APT_PACKAGES="python3 python3-venv python3-dev gcc linux-libc-dev sqlite3 ca-certificates"
UNITS="floorgate.service floorgate-sim@.service floorgate-demo.service"

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; WHEEL=$2; shift 2 ;;
        --no-apt) APT=0; shift ;;
        --no-start) START=0; shift ;;
        --with-venv) WITH_VENV=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

if [ -n "$DESTDIR" ]; then
    case "$DESTDIR" in /*) ;; *) die "DESTDIR must be an absolute path" ;; esac
    APT=0; START=0
    LIVE=0
else
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0), or set DESTDIR to lay out a tree"
    WITH_VENV=1
    LIVE=1
fi
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "no such wheel: $WHEEL"
for f in $UNITS 99-floorgate.rules floorgate.toml.example; do
    [ -f "$SRC/systemd/$f" ] || die "missing $SRC/systemd/$f: run this from a Floorgate checkout"
done

ROOT=${DESTDIR%/}
ETC=$ROOT/etc/floorgate
UNITDIR=$ROOT/etc/systemd/system
RULESDIR=$ROOT/etc/udev/rules.d
STATE=$ROOT/var/lib/floorgate

# --- 1. system packages ------------------------------------------------------------------------------------
if [ "$APT" -eq 1 ]; then
    say "installing Debian packages: $APT_PACKAGES"
    apt-get update -qq
    # shellcheck disable=SC2086  # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PACKAGES
fi
if [ "$WITH_VENV" -eq 1 ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "Floorgate needs Python 3.11 or newer ($("$PYTHON" --version 2>&1)); Debian 12 / Pi OS bookworm have it"
fi

# --- 2. the service user ---------------------------------------------------------------------------------------
if [ "$LIVE" -eq 1 ]; then
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        say "creating system user $SERVICE_USER"
        useradd --system --user-group --home-dir /var/lib/floorgate --no-create-home \
            --shell /usr/sbin/nologin --comment "Floorgate gateway" "$SERVICE_USER"
    fi
    # So `sudo -u floorgate floorgate doctor` sees the devices as the service does.
    usermod -a -G dialout,input "$SERVICE_USER"
fi

# --- 3. the program ----------------------------------------------------------------------------------------------
install -d -m 0755 "$ROOT$PREFIX"
if [ "$WITH_VENV" -eq 1 ]; then
    if [ ! -x "$ROOT$PREFIX/venv/bin/python" ]; then
        say "creating the virtual environment $PREFIX/venv"
        "$PYTHON" -m venv "$ROOT$PREFIX/venv"
    fi
    "$ROOT$PREFIX/venv/bin/python" -m pip install -q --upgrade pip
    if [ -n "$WHEEL" ]; then
        say "installing $WHEEL"
        "$ROOT$PREFIX/venv/bin/python" -m pip install -q --upgrade "$WHEEL"
    else
        say "installing Floorgate from $SRC"
        "$ROOT$PREFIX/venv/bin/python" -m pip install -q --upgrade "$SRC"
    fi
    install -d -m 0755 "$ROOT/usr/local/bin"
    ln -sfn "$PREFIX/venv/bin/floorgate" "$ROOT/usr/local/bin/floorgate"
fi
install -d -m 0755 "$ROOT$PREFIX/share"
install -m 0644 "$SRC/systemd/floorgate.toml.example" "$ROOT$PREFIX/share/floorgate.toml.example"
install -m 0644 "$SRC/systemd/99-floorgate.rules" "$ROOT$PREFIX/share/99-floorgate.rules"
[ ! -f "$SRC/docs/install.md" ] || install -m 0644 "$SRC/docs/install.md" "$ROOT$PREFIX/share/install.md"
install -m 0755 "$SRC/scripts/uninstall.sh" "$ROOT$PREFIX/uninstall.sh"

# --- 4. configuration --------------------------------------------------------------------------------------------
install -d -m 0750 "$ETC"
install -m 0644 "$SRC/systemd/floorgate.toml.example" "$ETC/floorgate.toml.example"
if [ ! -e "$ETC/floorgate.toml" ]; then
    say "writing $ETC/floorgate.toml from the example: edit it, then: sudo systemctl restart floorgate"
    install -m 0640 "$SRC/systemd/floorgate.toml.example" "$ETC/floorgate.toml"
else
    say "keeping the existing $ETC/floorgate.toml"
fi
install -d -m 0750 "$STATE"
if [ "$LIVE" -eq 1 ]; then
    chown "root:$SERVICE_USER" "$ETC" "$ETC/floorgate.toml"
    chown "$SERVICE_USER:$SERVICE_USER" "$STATE"
fi

# --- 5. systemd units and udev rules -------------------------------------------------------------------------------
install -d -m 0755 "$UNITDIR" "$RULESDIR"
for unit in $UNITS; do
    sed "s#/opt/floorgate#$PREFIX#g" "$SRC/systemd/$unit" > "$UNITDIR/$unit.tmp"
    chmod 0644 "$UNITDIR/$unit.tmp"
    mv -f "$UNITDIR/$unit.tmp" "$UNITDIR/$unit"
done
install -m 0644 "$SRC/systemd/99-floorgate.rules" "$RULESDIR/99-floorgate.rules"

if [ "$LIVE" -eq 0 ]; then
    say "tree laid out under $DESTDIR"
    exit 0
fi

say "reloading systemd and udev"
systemctl daemon-reload
if command -v udevadm >/dev/null; then
    udevadm control --reload || true
    udevadm trigger --action=add --subsystem-match=usb-serial || true
    udevadm trigger --action=change --subsystem-match=tty --subsystem-match=input || true
fi

# --- 6. start ----------------------------------------------------------------------------------------------------------
systemctl enable floorgate.service
if [ "$START" -eq 1 ]; then
    if systemctl is-active --quiet floorgate.service; then
        say "restarting floorgate (upgrade)"
        systemctl restart floorgate.service
    else
        say "starting floorgate"
        systemctl start floorgate.service || say "floorgate did not start: journalctl -u floorgate -n 50"
    fi
fi
if "$PREFIX/venv/bin/floorgate" doctor --help >/dev/null 2>&1; then
    say "checking the installation (floorgate doctor)"
    "$PREFIX/venv/bin/floorgate" doctor --config /etc/floorgate/floorgate.toml || true
fi
say "done. Status: systemctl status floorgate; logs: journalctl -u floorgate -f"
