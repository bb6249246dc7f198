#!/usr/bin/env bash
# Remove Floorgate installed by scripts/install.sh (also installed as /opt/floorgate/uninstall.sh).
#
#   sudo scripts/uninstall.sh           stop and remove the service, units, udev rules and /opt/floorgate;
#                                       keeps /etc/floorgate (config, secrets) and /var/lib/floorgate (journal)
#   sudo scripts/uninstall.sh --purge   also delete the config, the journal and the floorgate user
#   DESTDIR=/tmp/root scripts/uninstall.sh   remove the laid-out tree only (no systemctl, no userdel)
#
# Environment: DESTDIR, PREFIX (default /opt/floorgate).
set -euo pipefail

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/floorgate}
PURGE=0
SERVICE_USER=floorgate
UNITS="floorgate.service floorgate-sim@.service floorgate-demo.service"

say() { printf 'uninstall: %s\n' "$*"; }
die() { printf 'uninstall: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

if [ -n "$DESTDIR" ]; then
    case "$DESTDIR" in /*) ;; *) die "DESTDIR must be an absolute path" ;; esac
    LIVE=0
else
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
    LIVE=1
fi
case "$PREFIX" in /?*) ;; *) die "PREFIX must be an absolute path other than /" ;; esac
ROOT=${DESTDIR%/}

if [ "$LIVE" -eq 1 ] && command -v systemctl >/dev/null; then
    say "stopping and disabling the services"
    sims=$(systemctl list-units --all --plain --no-legend 'floorgate-sim@*' 2>/dev/null | awk '{print $1}' || true)
    for u in floorgate.service floorgate-demo.service $sims; do
        systemctl disable --now "$u" >/dev/null 2>&1 || true
    done
fi

for unit in $UNITS; do
    rm -f "$ROOT/etc/systemd/system/$unit"
done
rm -rf "$ROOT/etc/systemd/system/floorgate.service.d"
rm -f "$ROOT/etc/udev/rules.d/99-floorgate.rules"
link="$ROOT/usr/local/bin/floorgate"
if [ -L "$link" ] && [ "$(readlink "$link")" = "$PREFIX/venv/bin/floorgate" ]; then
    rm -f "$link"
fi
rm -rf "${ROOT:?}$PREFIX"

if [ "$LIVE" -eq 1 ]; then
    systemctl daemon-reload 2>/dev/null || true
    if command -v udevadm >/dev/null; then udevadm control --reload || true; fi
fi

if [ "$PURGE" -eq 1 ]; then
    say "deleting the configuration and the journal"
    rm -rf "$ROOT/etc/floorgate" "$ROOT/var/lib/floorgate" "$ROOT/var/lib/floorgate-demo"
    rm -rf "$ROOT"/var/lib/floorgate-sim-*
    if [ "$LIVE" -eq 1 ] && getent passwd "$SERVICE_USER" >/dev/null; then
        userdel "$SERVICE_USER" || say "could not delete user $SERVICE_USER"
    fi
else
    say "kept $ROOT/etc/floorgate (config) and $ROOT/var/lib/floorgate (journal); --purge deletes them"
fi
say "done"
