"""The `floorgate` command (SPEC §5). Subcommands import their modules lazily, so `floorgate run` does not
pay for the simulators and `floorgate --version` starts instantly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__

EXIT_CONFIG = 2  # a bad config
EXIT_DAMAGED = 3  # a database file that is no journal


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import App
    from gateway.config import ConfigError, check_start, load_config
    from gateway.journal import JournalDamaged
    from gateway.logs import setup_logging
    from gateway.ops.lock import AlreadyRunning

    try:
        cfg = load_config(args.config)
        check_start(cfg, str(args.config))
    except ConfigError as e:
        print(f"floorgate: bad config: {e}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_level)
    faulthandler.enable()  # a watchdog abort of a hung gateway leaves every thread's stack in the log
    app = App(cfg, config_path=args.config)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            _run_app(app)
    except AlreadyRunning as e:
        print(f"floorgate: {e}", file=sys.stderr)
        return 1
    except JournalDamaged as e:
        print(f"floorgate: {e}", file=sys.stderr)
        return EXIT_DAMAGED  # the unit does not restart it: nothing a restart mends
    return 0


def _run_app(app: Any) -> None:
    """The gateway until it stops; the parts' start-up failures that need a person come out as one line."""
    from gateway.web.server import WebStartError

    try:
        asyncio.run(app.run())
    except* WebStartError as group:
        for e in group.exceptions:
            print(f"floorgate: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def _cmd_schemas(args: argparse.Namespace) -> int:
    from gateway.contract import write_schemas

    for p in write_schemas(Path(args.out)):
        print(p)
    return 0


def _add_sim(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from simulators.ab.cli import add_parser as add_ab
    from simulators.floor.cli import add_parser as add_floor
    from simulators.hub.cli import add_parser as add_hub
    from simulators.printer.cli import add_parser as add_printer
    from simulators.ptl.cli import add_parser as add_ptl
    from simulators.scale.cli import add_parser as add_scale
    from simulators.scanner.cli import add_parser as add_scanner

    sim = sub.add_parser("sim", help="device, hub and floor simulators")
    simsub = sim.add_subparsers(dest="sim", required=True)
    for add in (add_hub, add_ptl, add_scanner, add_scale, add_printer, add_ab, add_floor):
        add(simsub)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="floorgate", description="Floorgate warehouse floor gateway")
    p.add_argument("--version", action="version", version=f"floorgate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, help="path of the TOML config")
    run.set_defaults(func=_cmd_run)
    schemas = sub.add_parser("schemas", help="write the JSON Schemas of the MQTT contract")
    schemas.add_argument("--out", default="schemas")
    schemas.set_defaults(func=_cmd_schemas)
    first = next((a for a in argv if not a.startswith("-")), "")
    if first in ("demo", ""):
        from simulators.demo import add_parser as add_demo

        add_demo(sub)
    # Only the subcommand asked for (or all, for --help) pulls in its modules.
    if first in ("sim", ""):
        _add_sim(sub)
    if first in ("doctor", "backup", "restore", "export", "support-bundle", ""):
        from gateway.ops.cli import add_parser as add_ops

        add_ops(sub)
    if first in ("user", ""):
        from gateway.users import add_parser as add_user

        add_user(sub)
    if first in ("ptl", ""):
        from drivers.ptl.cli import add_parser as add_ptl_tools

        add_ptl_tools(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_in).parse_args(args_in)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
