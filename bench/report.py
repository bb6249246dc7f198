"""The performance report: every benchmark in one command, one table, one JSON object.

    python -m bench.report [--quick] [--only journal_append,ptl_bus,...] [--skip peer,...]

Each bench runs as its own subprocess (`python -m bench.NAME ...`); its last output line is its JSON. Two
figures are measured here, because no single bench owns them:
  - start-up: from the exec of `floorgate run` to its "gateway started" log line, and to READY=1 on a
    $NOTIFY_SOCKET made for it (as systemd would), and from SIGTERM to exit; median of several starts;
  - loaded memory: the peak resident memory (VmHWM) of `floorgate demo`, a whole simulated floor in one
    process: the gateway plus every simulator and the hub, so an upper bound for the gateway under load.
    The gateway's own loaded VmHWM, in its own process, comes from the peer comparison (bench.peer).
`--quick` shrinks every size so the whole report takes a few minutes. A bench that fails or times out is
reported as such, with the end of its output, and the others still run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    timeout_s: float = 900


BENCHES = [
    Bench("journal_append", "bench.journal_append", [], ["--seconds", "1"], 300),
    Bench("rss", "bench.rss", [], ["--seconds", "2"], 300),
    Bench("sync_drain", "bench.sync_drain", [], ["--events", "10000"], 1200),
    Bench("sync_outage", "bench.sync_outage", ["--outage-s", "60"], ["--outage-s", "5"], 1200),
    Bench("ptl_bus", "bench.ptl_bus", [], ["--seconds", "0.5", "--rounds", "1", "--presses", "100"], 600),
    Bench("scan_driver", "bench.scan_driver", [], ["--scans", "500"], 300),
    Bench("scan_latency", "bench.scan_latency", [], ["--scans", "300"], 300),
    Bench("dispatch", "bench.dispatch", [], ["--decisions", "2000"], 300),
    Bench("scale", "bench.scale", [], ["--count", "300"], 300),
    Bench("ab", "bench.ab", [], ["--seeds", "1", "--orders", "1500", "--pickers", "12"], 3600),
    Bench("floor", "bench.floor", [], ["--orders", "200"], 3600),
    Bench("peer", "bench.peer.compare", [], ["--quick"], 3600),
]
LOCAL = ("startup", "demo_rss")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_bench(b: Bench, quick: bool, log_dir: Path) -> dict[str, Any]:
    """One bench in its own process; its last line as JSON, or what went wrong."""
    cmd = [sys.executable, "-m", b.module, *(b.quick if quick else b.full)]
    t0 = time.perf_counter()
    out = log_dir / f"{b.name}.out"
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait(b.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the bench and whatever it started
            proc.wait(30)
            rc = None
    elapsed = time.perf_counter() - t0
    text = out.read_text(errors="replace")
    res: dict[str, Any] = {"command": " ".join(["python", "-m", b.module, *(b.quick if quick else b.full)]),
                           "seconds": round(elapsed, 1)}
    if rc is None:
        res["error"] = f"timed out after {b.timeout_s:.0f} s:\n{_tail(text)}"
        return res
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        res["figures"] = json.loads(lines[-1])
        if not isinstance(res["figures"], dict):
            raise ValueError("not an object")
    except (IndexError, ValueError):
        res["error"] = f"exit {rc}, no JSON on the last line:\n{_tail(text)}"
        return res
    if rc != 0:
        res["error"] = f"exit {rc}:\n{_tail(text)}"
    res["table"] = "\n".join(lines[:-1])
    return res


# ---- start-up -------------------------------------------------------------------------------------------------


def floorgate_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("floorgate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]


def one_start(work: Path) -> dict[str, float]:
    """exec -> "gateway started", exec -> READY=1, SIGTERM -> exit, for one fresh data directory."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "floorgate.toml"
    cfg.write_text(f'data_dir = "{work / "data"}"\n[mqtt]\nport = {free_port()}\n'
                   f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n', encoding="utf-8")
    sock_path = str(work / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(60)
    started: list[float] = []
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen([*floorgate_cmd(), "run", "--config", str(cfg)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "NOTIFY_SOCKET": sock_path, "PYTHONUNBUFFERED": "1"})

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not started and "gateway started" in line:
                    started.append(time.monotonic())
        reader = threading.Thread(target=read, name="startup-reader")
        reader.start()
        ready = None
        try:
            while ready is None:
                msg = notify.recv(4096).decode(errors="replace")
                if "READY=1" in msg.split("\n"):
                    ready = time.monotonic()
        except TimeoutError:
            pass
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
            stopped = time.monotonic() - t_term
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            stopped = float("nan")
        reader.join(30)
    finally:
        notify.close()
    if not started:
        raise RuntimeError("no 'gateway started' line")
    return {"started_s": started[0] - t0, "ready_s": (ready - t0) if ready else float("nan"), "stop_s": stopped}


def startup(runs: int, work: Path) -> dict[str, Any]:
    results = [one_start(work / f"start-{k}") for k in range(runs)]

    def med(k: str) -> float:
        return statistics.median(r[k] for r in results)
    return {"bench": "startup", "runs": runs, "started_s": round(med("started_s"), 3),
            "ready_s": round(med("ready_s"), 3), "stop_s": round(med("stop_s"), 3),
            "started_max_s": round(max(r["started_s"] for r in results), 3)}


# ---- loaded memory --------------------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def demo_rss(seconds: float, work: Path) -> dict[str, Any]:
    """Peak RSS of `floorgate demo` (gateway + simulators + hub in one process) over its run."""
    cmd = [*floorgate_cmd(), "demo", "--headless", "--seconds", str(seconds), "--http-port", str(free_port()),
           "--data-dir", str(work / "demo")]
    with open(work / "demo.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        hwm = rss_max = 0
        deadline = time.monotonic() + seconds + 120
        while proc.poll() is None and time.monotonic() < deadline:
            hwm = max(hwm, _status_kb(proc.pid, "VmHWM"))
            rss_max = max(rss_max, _status_kb(proc.pid, "VmRSS"))
            time.sleep(0.5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    text = (work / "demo.out").read_text(errors="replace")
    report: dict[str, Any] = {}
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and "demo" in doc:
                report = doc
                break
    events = report.get("demo", {}).get("last_seq")
    return {"bench": "demo_rss", "seconds": seconds, "demo_hwm_mb": round(hwm / 1024, 1),
            "demo_rss_max_mb": round(rss_max / 1024, 1), "events": events, "exit": proc.returncode,
            "packed": report.get("demo", {}).get("orders", {}).get("packed")}


# ---- the table ------------------------------------------------------------------------------------------------


def _g(doc: dict[str, Any], name: str) -> dict[str, Any]:
    r = doc.get(name) or {}
    f = r.get("figures") if isinstance(r, dict) else None
    return f if isinstance(f, dict) else {}


def _n(v: Any, digits: int = 0, unit: str = "") -> str:
    if isinstance(v, bool) or v is None:
        return "n/a" if v is None else str(v)
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}f}{unit}"
    return str(v)


def table_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, baseline or comparison in the same run, goal)."""
    rows: list[tuple[str, str, str, str]] = []
    j = _g(doc, "journal_append")
    if j:
        rows.append(("journal: durable appends/s (group commit, fsync)", _n(j.get("events_per_s")),
                     f"one commit per event {_n(j.get('baseline_per_s'))}/s; ratio {_n(j.get('ratio'), 1)}x",
                     ">= 5,000/s"))
    d = _g(doc, "sync_drain")
    if d:
        rows.append((f"sync drain after outage: events/s ({_n(d.get('events'))} events)", _n(d.get("events_per_s")),
                     f"raw paho QoS 1 {_n(d.get('raw_paho_per_s'))}/s; ratio {_n(d.get('ratio'), 2)}", ">= 0.5"))
        rows.append(("sync drain: broker back -> first event at the hub", _n(d.get("first_event_s"), 2, " s"), "",
                     "< 1 s"))
    o = _g(doc, "sync_outage")
    if o:
        rows.append((f"broker down {_n(o.get('outage_s'))} s, floor working: back -> hub holds all",
                     _n(o.get("catch_up_s"), 2, " s"),
                     f"{_n(o.get('events'))} events, contiguous {o.get('contiguous')}, "
                     f"duplicates {o.get('duplicates')}", "seq 1..N, no gap"))
    p = _g(doc, "ptl_bus")
    if p:
        rows.append(("PTL bus: Modbus TCP transactions/s (32 modules)", _n(p.get("tcp_driver_tx_s")),
                     f"raw pymodbus FC04 loop {_n(p.get('tcp_raw_tx_s'))}/s; ratio {_n(p.get('tcp_ratio'), 2)}",
                     ">= 0.8"))
        rows.append((f"PTL: press -> key event p50 / p99 ({p.get('poll_ms')} ms poll)",
                     f"{_n(p.get('latency_p50_ms'), 1)} / {_n(p.get('latency_p99_ms'), 1)} ms", "",
                     f"p99 <= {p.get('latency_goal_ms')} ms"))
        rows.append(("PTL: RTU model at 115200 8N1, transactions/s", _n(p.get("rtu_projected_tx_s")),
                     f"wire ceiling {_n(p.get('rtu_ceiling_tx_s'))}/s", ""))
    s = _g(doc, "scan_latency")
    if s:
        rows.append(("scan -> stored in the journal p50 / p99",
                     f"{_n(s.get('p50_ms'), 2)} / {_n(s.get('p99_ms'), 2)} ms",
                     f"blocking os.read p99 {_n(s.get('base_p99_ms'), 3)} ms", "p99 < 5 ms"))
        rows.append(("scanner unplug/replug -> scan stored again", _n(s.get("recovery_s"), 2, " s"), "", "< 2 s"))
    sd = _g(doc, "scan_driver")
    if sd:
        rows.append(("serial scanner driver latency p99", _n(sd.get("latency_p99_us"), 0, " us"),
                     f"blocking read p99 {_n(sd.get('baseline_latency_p99_us'), 0)} us", ""))
    di = _g(doc, "dispatch")
    if di:
        rows.append(("dispatch decision p50 / p99 (50 pickers, 5,000 open tasks)",
                     f"{_n(di.get('choose_p50_us'), 0)} / {_n(di.get('choose_p99_us'), 0)} us",
                     f"plain max() p99 {_n(di.get('baseline_p99_us'), 0)} us; add+assign p99 "
                     f"{_n(di.get('assign_p99_us'), 0)} us", "< 1 ms"))
    sc = _g(doc, "scale")
    if sc:
        rows.append(("scale MT-SICS weighings/s (pty)", _n(sc.get("driver_si_per_s")),
                     f"blocking pyserial {_n(sc.get('baseline_pyserial_si_per_s'))}/s; ratio "
                     f"{_n(sc.get('driver_si_ratio'), 2)}", ""))
    r = _g(doc, "rss")
    if r:
        rows.append(("idle RSS, floorgate run (VmHWM)", _n(r.get("gateway_peak_mb"), 1, " MB"),
                     f"python + same imports {_n(r.get('imports_peak_mb'), 1)} MB", "<= 80 MB"))
    peer = _g(doc, "peer")
    fg20 = (peer.get("floorgate") or {}).get("20") or {}
    if fg20:
        rows.append((f"loaded RSS, floorgate run (PTL workload, {peer.get('modules')} modules at 20 ms, outage)",
                     _n(fg20.get("hwm_mb"), 1, " MB"), "", "<= 80 MB"))
    dm = _g(doc, "demo_rss")
    if dm:
        rows.append((f"loaded RSS, floorgate demo process ({_n(dm.get('seconds'))} s; gateway + all simulators)",
                     _n(dm.get("demo_hwm_mb"), 1, " MB"), f"{_n(dm.get('events'))} events", "(upper bound)"))
    st = _g(doc, "startup")
    if st:
        rows.append(("start-up: exec -> 'gateway started' (median)", _n(st.get("started_s"), 2, " s"),
                     f"max {_n(st.get('started_max_s'), 2)} s of {st.get('runs')}", ""))
        rows.append(("start-up: exec -> READY=1 (median)", _n(st.get("ready_s"), 2, " s"), "", ""))
        rows.append(("SIGTERM -> exit (median)", _n(st.get("stop_s"), 2, " s"), "", "< 10 s"))
    ab = _g(doc, "ab")
    if ab:
        seeds = ab.get("seeds") or []
        red = ", ".join(f"{100 * x['reduction_waited_30']:.0f}%" for x in seeds)
        rows.append((f"A/B: fewer tasks unstarted > 30 min (seeds {','.join(str(x['seed']) for x in seeds)})", red,
                     "static round-robin", f"goal met on {ab.get('goal_met_seeds')} of {ab.get('seeds_run')}"))
    fl = _g(doc, "floor")
    if fl:
        rows.append((f"floor simulation: packed orders that differ ({_n(fl.get('orders'))} orders)",
                     _n(fl.get("wrong_packed")), f"{_n(fl.get('errors_made'))} picker errors made", "0"))
    for row in peer.get("rows") or []:
        label, f, t, better = row
        rows.append((f"peer: {label}", f, f"ThingsBoard IoT GW: {t}", f"better: {better}"))
    return rows


def render(rows: list[tuple[str, str, str, str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(4)] if rows else [0, 0, 0, 0]
    head = ("figure", "measured", "baseline / comparison (same run)", "goal")
    w = [max(w[i], len(head[i])) for i in range(4)]
    out = [f"| {head[0]:{w[0]}} | {head[1]:>{w[1]}} | {head[2]:{w[2]}} | {head[3]:{w[3]}} |",
           f"|{'-' * (w[0] + 2)}|{'-' * (w[1] + 1)}:|{'-' * (w[2] + 2)}|{'-' * (w[3] + 2)}|"]
    out += [f"| {a:{w[0]}} | {b:>{w[1]}} | {c:{w[2]}} | {d:{w[3]}} |" for a, b, c, d in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes in all")
    ap.add_argument("--only", default="", help="comma-separated names to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated names to leave out")
    ap.add_argument("--keep", action="store_true", help="keep the work directory with every bench's output")
    args = ap.parse_args()
    names = [b.name for b in BENCHES] + list(LOCAL)
    only = {x for x in args.only.split(",") if x}
    skip = {x for x in args.skip.split(",") if x}
    unknown = (only | skip) - set(names)
    if unknown:
        ap.error(f"unknown bench {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    chosen = [n for n in names if (not only or n in only) and n not in skip]
    work = Path(tempfile.mkdtemp(prefix="floorgate-report-", dir=os.environ.get("BENCH_DIR")))
    t0 = time.perf_counter()
    doc: dict[str, Any] = {}
    for b in BENCHES:
        if b.name in chosen:
            print(f"report: {b.name} ...", file=sys.stderr, flush=True)
            doc[b.name] = run_bench(b, args.quick, work)
            if "error" in doc[b.name]:
                print(f"report: {b.name} FAILED: {doc[b.name]['error'][:2000]}", file=sys.stderr, flush=True)
    if "startup" in chosen:
        print("report: startup ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            doc["startup"] = {"figures": startup(3 if args.quick else 7, work / "startup"),
                              "seconds": round(time.perf_counter() - t, 1)}
        except (RuntimeError, OSError) as e:
            doc["startup"] = {"error": str(e), "seconds": round(time.perf_counter() - t, 1)}
    if "demo_rss" in chosen:
        print("report: demo_rss ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            doc["demo_rss"] = {"figures": demo_rss(20 if args.quick else 120, work),
                               "seconds": round(time.perf_counter() - t, 1)}
        except (RuntimeError, OSError) as e:
            doc["demo_rss"] = {"error": str(e), "seconds": round(time.perf_counter() - t, 1)}
    total = time.perf_counter() - t0
    rows = table_rows(doc)
    print(f"Floorgate performance report ({'quick' if args.quick else 'full'} sizes, {total / 60:.1f} min)")
    peer = _g(doc, "peer")
    if peer.get("machine"):
        print(f"machine: {peer['machine']}")
    print(render(rows))
    failed = {k: v["error"] for k, v in doc.items() if "error" in v}
    for k, err in failed.items():
        print(f"FAILED {k}: {err.splitlines()[0] if err else ''}")
    if peer.get("thingsboard_error"):
        print(f"peer: ThingsBoard side not measured: {peer['thingsboard_error'].splitlines()[0]}")
    print(f"(bench outputs in {work})" if args.keep or failed else "")
    if not args.keep and not failed:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"bench": "report", "quick": args.quick, "seconds": round(total, 1),
               "failed": sorted(failed), "rows": rows,
               "figures": {k: v.get("figures") for k, v in doc.items()},
               "bench_seconds": {k: v.get("seconds") for k, v in doc.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
