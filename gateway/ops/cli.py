"""The technician's subcommands: doctor, backup, restore, export, support-bundle.

Hook-in (gateway/cli.py): `from gateway.ops.cli import add_parser as add_ops_parsers; add_ops_parsers(sub)`
with `sub` the subparsers of `floorgate`; or one at a time with the `add_*_parser` functions below.
Every command returns 0 on success, 1 when it refused or failed (with the reason on stderr), 2 on a bad
config; none needs the gateway stopped, except restore.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.config import Config, ConfigError, load_config


def _config(args: argparse.Namespace, prog: str) -> Config | None:
    try:
        return load_config(args.config)
    except ConfigError as e:
        print(f"floorgate {prog}: bad config: {e}", file=sys.stderr)
        return None


# -- doctor -------------------------------------------------------------------------------------------------

def _doctor(args: argparse.Namespace) -> int:
    from gateway.ops.doctor import SERVICE_GROUPS, Options, default_identity, doctor, exit_code, identity, render_table

    try:
        who = identity(args.user, SERVICE_GROUPS if args.user == "floorgate" else ()) if args.user \
            else default_identity()
    except KeyError:
        print(f"floorgate doctor: no user {args.user!r} on this system", file=sys.stderr)
        return 2
    checks = doctor(args.config, Options(who=who, timeout_s=args.timeout))
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        print(f"floorgate doctor: device and file access checked for user {who.name} "
              f"(groups: {', '.join(who.group_names())})\n")
        print(render_table(checks))
    return exit_code(checks)


def add_doctor_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check config, devices, broker, certificates, clock, disk and database",
                       description="Checks everything a technician looks at first and prints one row per "
                                   "check with what is wrong and how to fix it. Exit 0 when nothing failed.")
    p.add_argument("--config", required=True, help="path of the TOML config")
    p.add_argument("--user", default="", help="check device and file access for this user (default: floorgate "
                                              "with the service's groups when run as root, else you)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per network check (default 5)")
    p.set_defaults(func=_doctor)


# -- backup / restore -----------------------------------------------------------------------------------------

def _backup(args: argparse.Namespace) -> int:
    from gateway.ops.backup import BackupError, backup

    cfg = _config(args, "backup")
    if cfg is None:
        return 2
    try:
        r = backup(cfg.db_path, Path(args.out), force=args.force, quiet=args.quiet)
    except BackupError as e:
        print(f"floorgate backup: {e}", file=sys.stderr)
        return 1
    print(f"backup written: {r.path} ({r.bytes / 1e6:.1f} MB, journal {r.journal_id}, last seq {r.last_seq}, "
          f"integrity {'ok' if r.integrity == ['ok'] else r.integrity})")
    return 0


def add_backup_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backup", help="copy the database while the gateway runs",
                       description="Online backup through SQLite's backup API: consistent, verified with "
                                   "integrity_check, safe while the gateway is running.")
    p.add_argument("--config", required=True, help="path of the TOML config")
    p.add_argument("--out", required=True, help="backup file to write (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_backup)


def _restore(args: argparse.Namespace) -> int:
    from gateway.ops.backup import BackupError, print_restore, restore
    from gateway.ops.lock import AlreadyRunning

    cfg = _config(args, "restore")
    if cfg is None:
        return 2
    if not args.yes:
        # A restore replaces the journal: only a person's "yes" or an explicit --yes may start it, never
        # whatever happens to be on a pipe (`echo n |`, a script's leftover input).
        if not sys.stdin.isatty():
            print("floorgate restore: no terminal to ask for confirmation: use --yes; nothing done",
                  file=sys.stderr)
            return 1
        try:
            answer = input(f"Replace {cfg.db_path} with {args.source}? The gateway must be stopped. [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("floorgate restore: nothing done", file=sys.stderr)
            return 1
    try:
        r = restore(cfg, Path(args.source), quiet=args.quiet)
    except AlreadyRunning as e:
        print(f"floorgate restore: refused: {e}", file=sys.stderr)
        return 1
    except BackupError as e:
        print(f"floorgate restore: {e}", file=sys.stderr)
        return 1
    print_restore(r)
    return 0


def add_restore_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("restore", help="replace the database with a backup (gateway stopped)",
                       description="Restores a backup made by `floorgate backup`. Refused while the gateway "
                                   "runs. The restored journal gets a new journal id, continues from the "
                                   "backup's last seq and skips packing.sscc_restore_gap SSCC serials; the "
                                   "replaced database is kept next to it.")
    p.add_argument("--config", required=True, help="path of the TOML config")
    p.add_argument("--from", dest="source", required=True, help="backup file")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed when stdin is not "
                                                    "a terminal)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_restore)


# -- export ---------------------------------------------------------------------------------------------------

def _export(args: argparse.Namespace) -> int:
    from gateway.ops.export import ExportError, export, parse_bound

    cfg = _config(args, "export")
    if cfg is None:
        return 2
    try:
        since = parse_bound(args.since, upper=False) if args.since else None
        until = parse_bound(args.until, upper=True) if args.until else None
        n = export(cfg.db_path, args.what, args.format, args.out, since=since, until=until, quiet=args.quiet)
    except (ExportError, OSError) as e:
        print(f"floorgate export: {e}", file=sys.stderr)
        return 1
    if args.out != "-":
        print(f"exported {n} {args.what} rows to {args.out}")
    return 0


def add_export_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="export the audit trail or the event log as CSV or JSON",
                       description="Reads in chunks from a read-only connection (safe while the gateway runs). "
                                   "CSV is UTF-8 with a BOM (opens cleanly in Excel).")
    p.add_argument("--config", required=True, help="path of the TOML config")
    p.add_argument("--what", required=True, choices=("audit", "events"))
    p.add_argument("--from", dest="since", default="", help="from this date (YYYY-MM-DD) or time (RFC 3339), "
                                                            "inclusive")
    p.add_argument("--to", dest="until", default="", help="up to this date (the whole day included) or "
                                                          "time (exclusive)")
    p.add_argument("--format", required=True, choices=("csv", "json"))
    p.add_argument("--out", required=True, help="file to write, or - for stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_export)


# -- support bundle -----------------------------------------------------------------------------------------------

def _bundle(args: argparse.Namespace) -> int:
    from gateway.ops.bundle import build_bundle

    out = Path(args.out)
    if not out.parent.is_dir():
        print(f"floorgate support-bundle: {out.parent} is not a directory", file=sys.stderr)
        return 1
    if not Path(args.config).exists():
        # A config that does not parse still makes a bundle (it may be the problem); a path that names nothing
        # is a typo, and a bundle without the box's config written with exit 0 helped nobody.
        print(f"floorgate support-bundle: {args.config} does not exist; give the gateway's config, e.g. "
              "/etc/floorgate/floorgate.toml; nothing written", file=sys.stderr)
        return 1
    try:
        manifest = build_bundle(args.config, out, unit=args.unit, run_doctor=not args.no_doctor)
    except OSError as e:
        print(f"floorgate support-bundle: {e}", file=sys.stderr)
        return 1
    print(f"support bundle written: {out}")
    for line in manifest[1:]:
        print(f"  {line}")
    return 0


def add_bundle_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("support-bundle", help="collect config (secrets removed), logs and statistics",
                       description="Writes a .tar.gz for support: the config with secrets replaced, the last "
                                   "day of logs, journal statistics, doctor's table, device names and, if the "
                                   "gateway answers on its HTTP port, its /healthz and /metrics (device statistics). "
                                   "No secret goes in.")
    p.add_argument("--config", required=True, help="path of the TOML config")
    p.add_argument("--out", required=True, help="file to write, e.g. support.tar.gz")
    p.add_argument("--unit", default="floorgate", help="systemd unit whose logs to include (default floorgate)")
    p.add_argument("--no-doctor", action="store_true", help="leave out the doctor's checks")
    p.set_defaults(func=_bundle)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """All of the above."""
    add_doctor_parser(sub)
    add_backup_parser(sub)
    add_restore_parser(sub)
    add_export_parser(sub)
    add_bundle_parser(sub)


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.ops.cli ...`: the same commands before they are wired into `floorgate`."""
    p = argparse.ArgumentParser(prog="floorgate")
    add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
