"""The `floorgate` command (SPEC §5)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from gateway import __version__


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import App
    from gateway.config import ConfigError, load_config
    from gateway.logs import setup_logging

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"floorgate: bad config: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    app = App(cfg)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(app.run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="floorgate", description="Floorgate warehouse floor gateway")
    p.add_argument("--version", action="version", version=f"floorgate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, help="path of the TOML config")
    run.set_defaults(func=_cmd_run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
