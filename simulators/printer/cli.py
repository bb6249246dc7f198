"""`floorgate sim printer`: a raw-port label printer that prints nothing and keeps every job.

    floorgate sim printer [--host 127.0.0.1] [--port 9100] [--dir DIR]

Each job is announced on stdout with its barcodes and text, and with --dir written to DIR/job-NNNNNN.zpl,
where a ZPL viewer (e.g. labelary.com) can render it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from simulators.printer.sim import PrinterSimulator, PrintJob


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("printer", help="a simulated raw TCP (port 9100) label printer that stores every job")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9100, help="TCP port (default 9100; 0 picks a free one)")
    p.add_argument("--dir", default="", help="write each job to DIR/job-NNNNNN.zpl")
    p.set_defaults(func=_run)


def describe(job: PrintJob) -> str:
    """One line per job for people watching the simulator."""
    parts = [f"job {job.number} from {job.peer}: {len(job.data)} bytes, {len(job.labels)} label(s)"]
    for label in job.labels:
        parts += [f"  barcode {b.barcode}: {b.data}" for b in label.barcodes]
        parts += [f"  text: {t}" for t in label.texts]
    if job.path is not None:
        parts.append(f"  saved as {job.path}")
    if job.truncated:
        parts.append("  (job too large: cut off)")
    return "\n".join(parts)


def _run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        print("floorgate sim printer: --port must be 0-65535")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> int:
    sim = PrinterSimulator(args.host, args.port, args.dir or None, on_job=lambda j: print(describe(j), flush=True))
    try:
        await sim.start()
    except OSError as e:
        print(f"floorgate sim printer: cannot listen on {args.host}:{args.port}: {e.strerror}", flush=True)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"printer simulator listening on {args.host}:{sim.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()
    return 0
