"""The performance report: every benchmark in one command, two tables, one JSON object.

    python -m bench.report [--quick] [--outage-s 60] [--only journal_append,ptl_bus,...] [--skip peer,...]
                           [--markdown FILE] [--keep]

Each bench runs as its own subprocess (`python -m bench.NAME ...`, its own process group); its last output
line is its JSON. Two figures are measured here, because no single bench owns them:
  - start-up: from the exec of `floorgate run` to its "gateway started" log line, and to READY=1 on a
    $NOTIFY_SOCKET made for it (as systemd would), and from SIGTERM to exit; median of several starts;
  - loaded memory: the peak resident memory (VmHWM) of `floorgate demo`, a whole simulated floor in one
    process: the gateway plus every simulator and the hub, so an upper bound for the gateway under load.
    The gateway's own loaded VmHWM, in its own process, comes from the peer comparison (bench.peer).
`--quick` shrinks every size so the whole report takes a few minutes; `--outage-s` is the broker outage of
bench.sync_outage and of the peer comparison (60 s, the figure the issue asks for; 10 s with --quick).
A bench that fails or times out is reported as such, with the end of its output, and the others still run.

Nothing is left running: the report makes itself the child subreaper (prctl), so whatever a bench leaves
behind (a Mosquitto, a ThingsBoard gateway, a simulator started in a session of its own) becomes the
report's child when its parent exits, and is stopped by its PID after every bench, on a timeout, on
Ctrl-C/SIGTERM/SIGHUP and at exit; the report says which processes it had to stop.

The report also measures what the rest of the machine did meanwhile: CPU seconds used by processes outside
the report's own tree (and the hypervisor's steal), per bench and over the run, so a noisy figure says so.
docs/report.md explains every row.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peer.common import machine

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    timeout_s: float = 900
    outage: bool = False  # takes --outage-s


BENCHES = [
    Bench("journal_append", "bench.journal_append", [], ["--seconds", "1"], 300),
    Bench("rss", "bench.rss", [], ["--seconds", "2"], 300),
    Bench("sync_drain", "bench.sync_drain", [], ["--events", "10000"], 1200),
    Bench("sync_outage", "bench.sync_outage", [], [], 1200, outage=True),
    Bench("ptl_bus", "bench.ptl_bus", [], ["--seconds", "0.5", "--rounds", "1", "--presses", "100"], 600),
    Bench("scan_driver", "bench.scan_driver", [], ["--scans", "500"], 300),
    Bench("scan_latency", "bench.scan_latency", [], ["--scans", "300"], 300),
    Bench("dispatch", "bench.dispatch", [], ["--decisions", "2000"], 300),
    Bench("scale", "bench.scale", [], ["--count", "300"], 300),
    Bench("ab", "bench.ab", [], ["--seeds", "1", "--orders", "1500", "--pickers", "12"], 3600),
    Bench("floor", "bench.floor", [], ["--orders", "200"], 3600),
    Bench("peer", "bench.peer.compare", [], ["--quick"], 3600, outage=True),
]
LOCAL = ("startup", "demo_rss")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


# ---- nothing left behind ----------------------------------------------------------------------------------------


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the clean-up that follows runs to its end
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def become_subreaper() -> bool:
    """Orphans of our descendants are re-parented to this process instead of init (Linux >= 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children() -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every process whose parent is this one."""
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            rest = stat[stat.rindex(")") + 2:].split()
            if int(rest[1]) != me:
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        out.append((int(d.name), rest[0], cmd))
    return out


def _reap(pid: int) -> bool:
    """True once the child is gone (reaped here, or by someone else)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return True


def sweep(grace_s: float = 5.0) -> list[str]:
    """Stop, by PID, every child process of the report (SIGTERM, then SIGKILL after grace_s), and again for
    whatever their exit orphans to us; reap the zombies. Only called when the report itself runs nothing.
    Returns "pid command" of every live process it had to stop."""
    stopped: list[str] = []
    for _ in range(8):
        kids = _children()
        if not kids:
            break
        live = []
        for pid, state, cmd in kids:
            if state == "Z":
                _reap(pid)
                continue
            stopped.append(f"{pid} {cmd[:160]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            live.append(pid)
        deadline = time.monotonic() + grace_s
        while live and time.monotonic() < deadline:
            live = [p for p in live if not _reap(p)]
            time.sleep(0.05)
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return stopped


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """A bench still running (timed out, or the report interrupted): SIGINT to its process group first, so its
    own clean-up runs (brokers, gateways, simulators stopped), then SIGKILL to the group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


# ---- what the rest of the machine did ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpu:
    wall: float
    busy_s: float  # every CPU, user + nice + system + irq + softirq
    steal_s: float
    own_s: float  # this process and its reaped descendants

    @staticmethod
    def now() -> Cpu:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = f
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return Cpu(time.monotonic(), (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK,
                   me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)

    def since(self, before: Cpu) -> dict[str, float]:
        """Cores used by processes outside the report's tree, and stolen, averaged over the interval."""
        wall = max(1e-6, self.wall - before.wall)
        others = max(0.0, (self.busy_s - before.busy_s) - (self.own_s - before.own_s))
        return {"others_cores": round(others / wall, 2), "own_cores": round((self.own_s - before.own_s) / wall, 2),
                "steal_cores": round((self.steal_s - before.steal_s) / wall, 2)}


# ---- one bench --------------------------------------------------------------------------------------------------


CURRENT: list[subprocess.Popen[Any]] = []  # the bench running now, for the signal path


def bench_args(b: Bench, quick: bool, outage_s: float | None) -> list[str]:
    args = list(b.quick if quick else b.full)
    if b.outage and outage_s is not None:
        args += ["--outage-s", f"{outage_s:g}"]
    return args


def run_bench(b: Bench, quick: bool, outage_s: float | None, log_dir: Path) -> dict[str, Any]:
    """One bench in its own process group; its last line as JSON, or what went wrong."""
    args = bench_args(b, quick, outage_s)
    cmd = [sys.executable, "-m", b.module, *args]
    t0 = time.perf_counter()
    out = log_dir / f"{b.name}.out"
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_DIR": str(log_dir)})
        CURRENT.append(proc)
        try:
            rc: int | None = proc.wait(b.timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            rc = None
        finally:
            if proc.poll() is None:  # interrupted: stop it before anything else happens
                stop_group(proc)
            CURRENT.remove(proc)
    elapsed = time.perf_counter() - t0
    text = out.read_text(errors="replace")
    res: dict[str, Any] = {"command": " ".join(["python", "-m", b.module, *args]), "seconds": round(elapsed, 1)}
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


# ---- the tables -------------------------------------------------------------------------------------------------

Row = tuple[str, str, str, str, str]  # figure, measured, baseline or comparison in the same run, goal, met


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


def _met(ok: Any) -> str:
    """yes / no for a goal, n/a when the figure is missing."""
    if ok is None:
        return "n/a"
    return "yes" if ok else "no"


def _cmp(v: Any, op: str, goal: float) -> bool | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return {"<": v < goal, "<=": v <= goal, ">=": v >= goal}[op]


def table_rows(doc: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    j = _g(doc, "journal_append")
    if j:
        rows.append(("journal: durable appends/s (WAL, synchronous=FULL, group commit)", _n(j.get("events_per_s")),
                     f"one commit per event {_n(j.get('baseline_per_s'))}/s; ratio {_n(j.get('ratio'), 1)}x "
                     f"(best of {', '.join(j.get('by_producers') or [])} producers: {_n(j.get('producers'))})",
                     ">= 5,000/s", _met(_cmp(j.get("events_per_s"), ">=", 5000))))
        rows.append(("journal: ratio to one commit per event", f"{_n(j.get('ratio'), 1)}x",
                     f"commit wait p99 {_n(j.get('commit_wait_p99_ms'), 1, ' ms')}", ">= 20x",
                     _met(_cmp(j.get("ratio"), ">=", 20))))
    d = _g(doc, "sync_drain")
    if d:
        rows.append((f"sync drain: events/s, {_n(d.get('events'))} stored offline, to the hub",
                     _n(d.get("events_per_s")),
                     f"raw paho QoS 1 loop {_n(d.get('raw_paho_per_s'))}/s; ratio {_n(d.get('ratio'), 2)}",
                     "ratio >= 0.5", _met(_cmp(d.get("ratio"), ">=", 0.5))))
        rows.append(("sync drain: broker back -> first event at the hub", _n(d.get("first_event_s"), 2, " s"), "",
                     "< 1 s", _met(_cmp(d.get("first_event_s"), "<", 1.0))))
    o = _g(doc, "sync_outage")
    if o:
        ok = o.get("contiguous") is True and o.get("duplicates") == 0 and not o.get("conflicts")
        rows.append((f"broker down {_n(o.get('outage_s'))} s, events still committed: back -> hub holds all",
                     _n(o.get("catch_up_s"), 2, " s"),
                     f"{_n(o.get('events'))} events ({_n(o.get('produced_during_outage'))} in the outage), "
                     f"contiguous {o.get('contiguous')}, duplicates {o.get('duplicates')}",
                     "seq 1..N, no gap", _met(ok if o.get("contiguous") is not None else None)))
    p = _g(doc, "ptl_bus")
    if p:
        rows.append(("PTL bus: Modbus TCP transactions/s (32 modules)", _n(p.get("tcp_driver_tx_s")),
                     f"raw pymodbus FC04 loop {_n(p.get('tcp_raw_tx_s'))}/s; ratio {_n(p.get('tcp_ratio'), 2)}",
                     "ratio >= 0.8", _met(_cmp(p.get("tcp_ratio"), ">=", 0.8))))
        goal = p.get("latency_goal_ms")
        rows.append((f"PTL: press -> key event p50 / p99 ({p.get('poll_ms')} ms poll, driver)",
                     f"{_n(p.get('latency_p50_ms'), 1)} / {_n(p.get('latency_p99_ms'), 1)} ms", "",
                     f"p99 <= {goal} ms",
                     _met(_cmp(p.get("latency_p99_ms"), "<=", goal) if isinstance(goal, (int, float)) else None)))
        rows.append(("PTL: RTU at 115200 8N1 (wire model + measured overhead), transactions/s",
                     _n(p.get("rtu_projected_tx_s")), f"wire ceiling {_n(p.get('rtu_ceiling_tx_s'))}/s", "", ""))
    s = _g(doc, "scan_latency")
    if s:
        rows.append(("scan -> stored in the journal p50 / p99",
                     f"{_n(s.get('p50_ms'), 2)} / {_n(s.get('p99_ms'), 2)} ms",
                     f"blocking os.read p99 {_n(s.get('base_p99_ms'), 3)} ms", "p99 < 5 ms",
                     _met(_cmp(s.get("p99_ms"), "<", 5.0))))
        rows.append(("scanner unplug/replug -> scan stored again", _n(s.get("recovery_s"), 2, " s"), "", "< 2 s",
                     _met(_cmp(s.get("recovery_s"), "<", 2.0))))
    sd = _g(doc, "scan_driver")
    if sd:
        rows.append(("serial scanner driver: last byte -> scan p50 / p99",
                     f"{_n(sd.get('latency_p50_us'), 0)} / {_n(sd.get('latency_p99_us'), 0)} us",
                     f"blocking read p99 {_n(sd.get('baseline_latency_p99_us'), 0)} us", "", ""))
    di = _g(doc, "dispatch")
    if di:
        rows.append((f"dispatch decision p50 / p99 ({_n(di.get('pickers'))} pickers, "
                     f"{_n(di.get('open_tasks'))} open tasks)",
                     f"{_n(di.get('choose_p50_us'), 0)} / {_n(di.get('choose_p99_us'), 0)} us",
                     f"plain max() p99 {_n(di.get('baseline_p99_us'), 0)} us; add+assign p99 "
                     f"{_n(di.get('assign_p99_us'), 0)} us", "p99 < 1 ms",
                     _met(_cmp(di.get("choose_p99_us"), "<", 1000))))
    sc = _g(doc, "scale")
    if sc:
        rows.append(("scale: MT-SICS weighings/s (pty)", _n(sc.get("driver_si_per_s")),
                     f"blocking pyserial {_n(sc.get('baseline_pyserial_si_per_s'))}/s; ratio "
                     f"{_n(sc.get('driver_si_ratio'), 2)}", "", ""))
    r = _g(doc, "rss")
    if r:
        rows.append(("idle RSS, floorgate run (VmHWM)", _n(r.get("gateway_peak_mb"), 1, " MB"),
                     f"python + the same imports {_n(r.get('imports_peak_mb'), 1)} MB", "<= 80 MB",
                     _met(_cmp(r.get("gateway_peak_mb"), "<=", 80))))
    peer = _g(doc, "peer")
    fg20 = (peer.get("floorgate") or {}).get(str(min((int(k) for k in peer.get("floorgate") or {}), default=0)))
    if fg20:
        rows.append((f"loaded RSS, floorgate run (peer workload: {peer.get('modules')} modules at "
                     f"{fg20.get('poll_ms')} ms, presses, outage)", _n(fg20.get("hwm_mb"), 1, " MB"),
                     "", "<= 80 MB", _met(_cmp(fg20.get("hwm_mb"), "<=", 80))))
    dm = _g(doc, "demo_rss")
    if dm:
        rows.append((f"loaded RSS, floorgate demo, one process: gateway + every simulator ({_n(dm.get('seconds'))} s)",
                     _n(dm.get("demo_hwm_mb"), 1, " MB"), f"{_n(dm.get('events'))} events", "(upper bound)", ""))
    st = _g(doc, "startup")
    if st:
        rows.append(("start-up: exec -> 'gateway started' (median)", _n(st.get("started_s"), 2, " s"),
                     f"max {_n(st.get('started_max_s'), 2)} s of {st.get('runs')} starts", "", ""))
        rows.append(("start-up: exec -> READY=1 to systemd (median)", _n(st.get("ready_s"), 2, " s"), "", "", ""))
        rows.append(("SIGTERM -> exit (median)", _n(st.get("stop_s"), 2, " s"), "", "< 10 s",
                     _met(_cmp(st.get("stop_s"), "<", 10))))
    ab = _g(doc, "ab")
    if ab:
        seeds = ab.get("seeds") or []
        red = ", ".join(f"{100 * x['reduction_waited_30']:.0f}%" for x in seeds)
        met = ab.get("goal_met_seeds")
        rows.append((f"A/B: fewer tasks unstarted > 30 min (seeds {','.join(str(x['seed']) for x in seeds)})", red,
                     "static round-robin", f">= 50% (met on {met} of {ab.get('seeds_run')} seeds)",
                     _met(met == ab.get("seeds_run") if met is not None else None)))
    fl = _g(doc, "floor")
    if fl:
        rows.append((f"floor simulation: packed orders that differ ({_n(fl.get('orders'))} orders)",
                     _n(fl.get("wrong_packed")), f"{_n(fl.get('errors_made'))} picker errors made", "0",
                     _met(fl.get("wrong_packed") == 0 if fl.get("wrong_packed") is not None else None)))
    for name, res in doc.items():
        if isinstance(res, dict) and "error" in res:
            first = (res["error"].splitlines() or [""])[0]
            rows.append((f"{name}: FAILED", "n/a", first[:100], "", "no"))
    return rows


def peer_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in (_g(doc, "peer").get("rows") or [])]


def render(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: tuple[int, ...] = (1,)) -> str:
    """A Markdown table that reads as well in a terminal (padded columns)."""
    w = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(f"{c:>{w[i]}}" if i in right else f"{c:{w[i]}}" for i, c in enumerate(cells)) + " |"
    rule = "|" + "|".join(("-" * (w[i] + 1) + ":") if i in right else "-" * (w[i] + 2) for i in range(len(head))) + "|"
    return "\n".join([line(head), rule, *(line(r) for r in rows)])


def load_note(load: dict[str, float], per_bench: dict[str, dict[str, float]]) -> str:
    busiest = max(per_bench.items(), key=lambda kv: kv[1].get("others_cores", 0.0), default=None)
    text = (f"other processes on the machine used {load['others_cores']:.2f} of its {os.cpu_count()} cores on "
            f"average during the run (the report itself {load['own_cores']:.2f}; steal {load['steal_cores']:.2f})")
    if busiest is not None and busiest[1].get("others_cores", 0.0) > 0.1:
        text += f"; most during {busiest[0]}: {busiest[1]['others_cores']:.2f}"
    return text


def render_all(doc: dict[str, Any], meta: dict[str, Any], markdown: bool = False) -> str:
    """Both tables with what they were measured on; `markdown`: the heading lines as a list, for a file."""
    head = [f"Floorgate performance report: `{meta['command']}`" if markdown else
            f"Floorgate performance report: {meta['command']}",
            f"{'quick' if meta['quick'] else 'full'} sizes, {meta['outage_s']:g} s outages; "
            f"{meta['seconds'] / 60:.1f} min in all",
            f"machine: {meta['machine']}",
            f"load: {load_note(meta['load'], meta['bench_load'])}"]
    out = [*(f"- {h}" for h in head), ""] if markdown else [*head, ""]
    out.append(render(("figure", "measured", "baseline / comparison (same run)", "goal", "met"), table_rows(doc)))
    prow = peer_rows(doc)
    peer = _g(doc, "peer")
    if prow:
        out += ["",
                f"Floorgate beside ThingsBoard IoT Gateway {peer.get('tb_version', '')} on the same workload "
                f"in the same run: {peer.get('modules')} PTL modules over Modbus TCP (FC04 of IR 0-3 per module per "
                f"poll), MQTT QoS 1 to a private Mosquitto, SQLite storage, report on change; "
                f"{peer.get('presses')} presses per run",
                "",
                render(("figure", "Floorgate", f"ThingsBoard IoT GW {peer.get('tb_version', '')}".strip(), "better"),
                       prow, right=(1, 2))]
    if peer.get("floorgate_error"):
        out.append(f"peer: Floorgate side FAILED: {peer['floorgate_error'].splitlines()[0]}")
    if peer.get("thingsboard_error"):
        out.append(f"peer: ThingsBoard side not measured: {peer['thingsboard_error'].splitlines()[0]}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes in all")
    ap.add_argument("--outage-s", type=float, default=None,
                    help="broker outage of bench.sync_outage and of the peer comparison (60; 10 with --quick)")
    ap.add_argument("--only", default="", help="comma-separated names to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated names to leave out")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the tables (Markdown) to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory with every bench's output")
    args = ap.parse_args()
    outage_s = args.outage_s if args.outage_s is not None else (10.0 if args.quick else 60.0)
    names = [b.name for b in BENCHES] + list(LOCAL)
    only = {x for x in args.only.split(",") if x}
    skip = {x for x in args.skip.split(",") if x}
    unknown = (only | skip) - set(names)
    if unknown:
        ap.error(f"unknown bench {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    chosen = [n for n in names if (not only or n in only) and n not in skip]
    if not become_subreaper():
        print("report: cannot become the child subreaper; a process a bench leaves in a session of its own "
              "may outlive it", file=sys.stderr, flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="floorgate-report-", dir=os.environ.get("BENCH_DIR")))
    t0, cpu0 = time.perf_counter(), Cpu.now()
    doc: dict[str, Any] = {}
    bench_load: dict[str, dict[str, float]] = {}
    left: dict[str, list[str]] = {}
    interrupted: Interrupted | None = None

    def after(name: str, c0: Cpu) -> None:
        stray = sweep()
        if stray:
            left[name] = stray
            print(f"report: {name} left {len(stray)} process(es) running, stopped: {'; '.join(stray)}",
                  file=sys.stderr, flush=True)
        bench_load[name] = Cpu.now().since(c0)
        if "error" in doc.get(name, {}):
            print(f"report: {name} FAILED: {doc[name]['error'][:2000]}", file=sys.stderr, flush=True)

    try:
        for b in BENCHES:
            if b.name in chosen:
                print(f"report: {b.name} ...", file=sys.stderr, flush=True)
                c0 = Cpu.now()
                doc[b.name] = run_bench(b, args.quick, outage_s, work)
                after(b.name, c0)
        if "startup" in chosen:
            print("report: startup ...", file=sys.stderr, flush=True)
            t, c0 = time.perf_counter(), Cpu.now()
            try:
                doc["startup"] = {"figures": startup(3 if args.quick else 7, work / "startup"),
                                  "seconds": round(time.perf_counter() - t, 1)}
            except (RuntimeError, OSError) as e:
                doc["startup"] = {"error": str(e), "seconds": round(time.perf_counter() - t, 1)}
            after("startup", c0)
        if "demo_rss" in chosen:
            print("report: demo_rss ...", file=sys.stderr, flush=True)
            t, c0 = time.perf_counter(), Cpu.now()
            try:
                figures = demo_rss(20 if args.quick else 120, work)
                doc["demo_rss"] = {"figures": figures, "seconds": round(time.perf_counter() - t, 1)}
                if not figures.get("packed"):  # a floor that did no work says nothing about memory under load
                    doc["demo_rss"]["error"] = (f"the demo floor packed no order ({figures.get('events')} events, "
                                                f"exit {figures.get('exit')}); see demo.out")
            except (RuntimeError, OSError) as e:
                doc["demo_rss"] = {"error": str(e), "seconds": round(time.perf_counter() - t, 1)}
            after("demo_rss", c0)
    except Interrupted as e:
        interrupted = e
        print(f"report: {e}, stopping what runs ...", file=sys.stderr, flush=True)
    finally:
        stray = sweep()
        if stray:
            left.setdefault("(at exit)", []).extend(stray)
            print(f"report: stopped {len(stray)} process(es) at exit: {'; '.join(stray)}", file=sys.stderr,
                  flush=True)
    total = time.perf_counter() - t0
    peer = _g(doc, "peer")
    meta = {"command": "python -m bench.report " + " ".join(sys.argv[1:]), "quick": args.quick,
            "outage_s": outage_s, "seconds": total, "machine": peer.get("machine") or machine(),
            "load": Cpu.now().since(cpu0), "bench_load": bench_load}
    print(render_all(doc, meta))
    if args.markdown is not None:
        args.markdown.write_text(render_all(doc, meta, markdown=True) + "\n", encoding="utf-8")
    failed = {k: v["error"] for k, v in doc.items() if "error" in v}
    for k, err in failed.items():
        print(f"FAILED {k}: {err.splitlines()[0] if err else ''}")
    for k, procs in left.items():
        print(f"left running by {k}, stopped by the report: {len(procs)}")
    if interrupted is not None:
        print(f"INTERRUPTED ({interrupted}): the table holds only the benches that finished")
    keep = args.keep or bool(failed) or interrupted is not None
    print(f"(bench outputs in {work})" if keep else "(bench outputs removed; --keep keeps them)")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"bench": "report", "quick": args.quick, "outage_s": outage_s, "seconds": round(total, 1),
               "machine": meta["machine"], "load": meta["load"], "bench_load": bench_load,
               "failed": sorted(failed), "left_running": left, "interrupted": str(interrupted or "") or None,
               "rows": table_rows(doc), "peer_rows": peer_rows(doc),
               "figures": {k: v.get("figures") for k, v in doc.items()},
               "bench_seconds": {k: v.get("seconds") for k, v in doc.items()}}
    print(json.dumps(summary))
    if interrupted is not None:
        sys.exit(128 + interrupted.signum)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
