"""Floorgate against ThingsBoard IoT Gateway on the same Modbus-poll-to-MQTT workload, in the same run.

Both gateways poll input registers 0-3 of the same N simulated PTL modules (Modbus TCP, the simulator in this
process) and publish over MQTT QoS 1 to a private Mosquitto; the same plain paho subscriber timestamps what
arrives. Each side runs twice, at 100 ms and at 20 ms poll, each time in a fresh process with a fresh broker;
the 20 ms run ends with a broker outage while keys keep being pressed. Measured per run: latency from a key
press in the simulator to the message at the subscriber (p50/p99), CPU while polling with no presses, CPU
seconds over the run and the peak resident memory (from /proc), and after the outage: time to the first
message, and presses lost or delivered twice.

    python -m bench.peer.compare [--quick] [--modules 16] [--presses 200] [--outage-s 60]

ThingsBoard runs from its own venv (bench/peer/venv.py). docs/report.md says what differs between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.peer.common import SideResult, machine, pct
from bench.peer.fg_side import FgSide
from bench.peer.tb_side import TbSide
from bench.peer.venv import TB_VERSION, PeerUnavailable, ensure_tb_venv


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}{unit}"


def _winner(fg: float | None, tb: float | None, lower_better: bool = True) -> str:
    if fg is None or tb is None:  # a side not measured (failed, or not installable here) wins nothing either
        return "n/a"
    if abs(fg - tb) <= 1e-9:
        return "tie"
    if max(fg, tb) > 0 and abs(fg - tb) / max(fg, tb) < 0.05:
        return "tie (within 5%)"
    return "Floorgate" if (fg < tb) == lower_better else "ThingsBoard"


def per_kpoll(r: SideResult, modules: int) -> float | None:
    """CPU milliseconds per 1,000 Modbus polls in the idle window: the cost of polling, whatever the rate."""
    polls = r.polls_per_module_s * modules
    return (r.cpu_idle_pct / 100) / polls * 1e6 if polls else None


def run_share(r: SideResult) -> float | None:
    return 100 * r.cpu_run_s / r.wall_run_s if r.wall_run_s else None


def _run_text(r: SideResult) -> str:
    return f"{r.cpu_run_s:.2f} s in {r.wall_run_s:.0f} s ({run_share(r) or 0:.0f}%)"


def rows(fg: dict[int, SideResult], tb: dict[int, SideResult], n: int) -> list[tuple[str, str, str, str]]:
    """(figure, Floorgate, ThingsBoard, better) for every poll period either side ran; n/a where one did not."""
    out: list[tuple[str, str, str, str]] = []
    polls = sorted(set(fg) | set(tb), reverse=True)

    def add(label: str, f: float | None, t: float | None, unit: str, digits: int = 1,
            lower_better: bool = True) -> None:
        out.append((label, _fmt(f, unit, digits), _fmt(t, unit, digits), _winner(f, t, lower_better)))

    def lat(r: SideResult | None, p: float) -> float | None:
        return pct(r.latencies_ms, p) if r is not None and r.latencies_ms else None

    for poll in polls:
        for p in (50, 99):
            add(f"press -> MQTT p{p}, {poll} ms poll", lat(fg.get(poll), p), lat(tb.get(poll), p), " ms")
    for poll in polls:
        a, b = fg.get(poll), tb.get(poll)
        add(f"polls per second of a module showing a job, {poll} ms poll (set: {1000 / poll:.0f})",
            a.polls_per_lit_module_s if a else None, b.polls_per_lit_module_s if b else None, "", 1,
            lower_better=False)
    for poll in polls:
        a, b = fg.get(poll), tb.get(poll)
        add(f"Modbus requests per second on the bus, {n} modules, {poll} ms poll",
            a.polls_per_module_s * n if a else None, b.polls_per_module_s * n if b else None, "", 0)
    for poll in polls:
        a, b = fg.get(poll), tb.get(poll)
        add(f"CPU polling, no presses, {poll} ms poll", a.cpu_idle_pct if a else None,
            b.cpu_idle_pct if b else None, " % of a core")
    for poll in polls:
        a, b = fg.get(poll), tb.get(poll)
        add(f"CPU per 1,000 polls, {poll} ms poll", per_kpoll(a, n) if a else None, per_kpoll(b, n) if b else None,
            " ms")
    for poll in polls:
        a, b = fg.get(poll), tb.get(poll)
        out.append((f"CPU user+sys over the whole {poll} ms run", _run_text(a) if a else "n/a",
                    _run_text(b) if b else "n/a", _winner(run_share(a) if a else None, run_share(b) if b else None)))
    for poll in polls:
        a, b = fg.get(poll), tb.get(poll)
        add(f"peak RSS (VmHWM), {poll} ms run", a.hwm_mb if a else None, b.hwm_mb if b else None, " MB")
    o_fg = next((r for r in fg.values() if r.outage_s), None)
    o_tb = next((r for r in tb.values() if r.outage_s), None)
    if o_fg is not None or o_tb is not None:
        secs = f"{next(r.outage_s for r in (o_fg, o_tb) if r is not None):.0f} s"

        def lost(r: SideResult | None) -> str:
            return f"{r.lost} of {r.outage_presses}" if r else "n/a"

        def dups(r: SideResult | None) -> str:
            return f"{r.duplicated} (+{r.redelivered})" if r else "n/a"
        add(f"broker back after {secs} -> first event", o_fg.first_event_after_outage_s if o_fg else None,
            o_tb.first_event_after_outage_s if o_tb else None, " s", 2)
        add(f"broker back after {secs} -> every outage press", o_fg.all_events_after_outage_s if o_fg else None,
            o_tb.all_events_after_outage_s if o_tb else None, " s", 2)
        out.append((f"presses during the {secs} outage lost", lost(o_fg), lost(o_tb),
                    _winner(o_fg.lost if o_fg else None, o_tb.lost if o_tb else None)))
        out.append(("events published twice by the gateway, whole run (+ broker redeliveries)", dups(o_fg),
                    dups(o_tb), _winner(o_fg.duplicated if o_fg else None, o_tb.duplicated if o_tb else None)))
    return out


def table(r: list[tuple[str, str, str, str]], tb_name: str) -> str:
    w = max(len(x[0]) for x in r)
    lines = [f"{'':{w}}  {'Floorgate':>22}  {tb_name:>26}  better",
             f"{'-' * w}  {'-' * 22}  {'-' * 26}  {'-' * 15}"]
    lines += [f"{a:{w}}  {b:>22}  {c:>26}  {d}" for a, b, c, d in r]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    units = list(range(1, args.modules + 1))
    work = Path(tempfile.mkdtemp(prefix="floorgate-peer-", dir=os.environ.get("BENCH_DIR")))
    doc: dict[str, Any] = {"bench": "peer", "tb_version": TB_VERSION, "modules": args.modules, "presses": args.presses,
                           "outage_s": args.outage_s, "machine": machine(), "work_dir": str(work)}
    tb_error = None
    try:
        python = await asyncio.to_thread(ensure_tb_venv)
    except PeerUnavailable as e:
        python, tb_error = None, str(e)
    fg_side = FgSide(work, units, args.seed)
    tb_side = TbSide(python, work, units, args.seed) if python is not None else None
    fg: dict[int, SideResult] = {}
    fg_errors: list[str] = []
    tb: dict[int, SideResult] = {}
    for poll in args.polls:
        outage = args.outage_s if poll == min(args.polls) else 0.0
        kw = {"poll_ms": poll, "presses": args.presses, "idle_s": args.idle_s, "outage_s": outage,
              "outage_interval_s": args.outage_interval_s, "drain_timeout_s": args.drain_timeout_s}
        print(f"peer: Floorgate, {poll} ms poll{f', {outage:.0f} s outage' if outage else ''} ...",
              file=sys.stderr, flush=True)
        try:
            fg[poll] = await fg_side.run(**kw)
        except Exception as e:  # said in the report; ThingsBoard's side of this run is still measured
            fg_errors.append(f"{poll} ms: {type(e).__name__}: {e}")
            print(f"peer: Floorgate, {poll} ms poll FAILED: {traceback.format_exc()}", file=sys.stderr, flush=True)
        if tb_side is not None:
            print(f"peer: ThingsBoard, {poll} ms poll{f', {outage:.0f} s outage' if outage else ''} ...",
                  file=sys.stderr, flush=True)
            try:
                tb[poll] = await tb_side.run(**kw)
            except Exception as e:  # the report says what failed instead of losing Floorgate's side
                tb_error = f"{type(e).__name__}: {e}"
                tb_side = None
    doc["floorgate"] = {str(p): r.figures() for p, r in fg.items()}
    doc["thingsboard"] = {str(p): r.figures() for p, r in tb.items()}
    if tb_error:
        doc["thingsboard_error"] = tb_error
    if fg_errors:
        doc["floorgate_error"] = "; ".join(fg_errors)
    doc["rows"] = rows(fg, tb, args.modules)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small sizes: 8 modules, 30 presses, 10 s outage")
    ap.add_argument("--modules", type=int, default=None)
    ap.add_argument("--presses", type=int, default=None, help="presses per run for the latency figures")
    ap.add_argument("--outage-s", type=float, default=None)
    ap.add_argument("--outage-interval-s", type=float, default=1.0, help="one press per this many s in the outage")
    ap.add_argument("--idle-s", type=float, default=None, help="window for the CPU-while-polling figure")
    ap.add_argument("--drain-timeout-s", type=float, default=240.0)
    ap.add_argument("--polls", type=lambda s: [int(x) for x in s.split(",")], default=[100, 20])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs of both gateways)")
    args = ap.parse_args()
    quick = args.quick
    args.modules = args.modules or (8 if quick else 16)
    args.presses = args.presses or (30 if quick else 200)
    args.outage_s = args.outage_s if args.outage_s is not None else (10.0 if quick else 60.0)
    args.idle_s = args.idle_s or (3.0 if quick else 10.0)
    logging.getLogger("floorgate").setLevel(logging.ERROR)  # the hub's reconnect warnings in the outage
    t0 = time.perf_counter()
    doc = asyncio.run(run(args))
    doc["bench_s"] = round(time.perf_counter() - t0, 1)
    tb_name = f"ThingsBoard IoT GW {TB_VERSION}"
    print(f"peer comparison: {args.modules} PTL modules over Modbus TCP, FC04 of IR 0-3 per module per poll, "
          f"MQTT QoS 1 to a private Mosquitto; {args.presses} presses per run; machine: {doc['machine']}")
    print(table(doc["rows"], tb_name))
    if doc.get("floorgate_error"):
        print(f"Floorgate side FAILED: {doc['floorgate_error']}")
    if doc.get("thingsboard_error"):
        print(f"ThingsBoard side not measured: {doc['thingsboard_error']}")
    for side in ("floorgate", "thingsboard"):
        for p, f in doc[side].items():
            if f.get("notes"):
                print(f"{side} {p} ms: {f['notes']}")
    print(f"({doc['bench_s']:.0f} s)")
    if args.keep or doc.get("thingsboard_error") or doc.get("floorgate_error"):
        print(f"(logs of both gateways in {doc['work_dir']})")
    else:
        shutil.rmtree(doc["work_dir"], ignore_errors=True)
    print(json.dumps(doc))
    if doc.get("floorgate_error"):
        sys.exit(1)


if __name__ == "__main__":
    main()
