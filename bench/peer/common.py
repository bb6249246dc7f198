"""Parts both sides of the peer comparison share, so that neither is measured by different code: the
subscriber that timestamps what arrives at the broker's far side, the /proc readings of the gateway
process, and the percentiles."""

from __future__ import annotations

import asyncio
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """CPU count and model, memory, kernel and Python: the line every report carries."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} x {cpu}, {mem:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # time.monotonic() in the subscriber's network thread, the moment paho handed it over
    topic: str
    payload: bytes
    dup: bool  # the DUP flag: the broker sending again what it had sent this subscriber before (QoS 1 redelivery)


class Repeats:
    """Counts a message's arrivals after the first: with DUP set the broker redelivered it to the meter, without
    it the gateway published it twice (the same count on both sides of the comparison)."""

    def __init__(self) -> None:
        self.republished = 0
        self.redelivered = 0

    def arrived(self, times: list[float], at: float, dup: bool) -> bool:
        """Record an arrival at `at`; True if it was a repeat."""
        times.append(at)
        if len(times) == 1:
            return False
        if dup:
            self.redelivered += 1
        else:
            self.republished += 1
        return True


class Subscriber:
    """A plain paho QoS 1 subscriber with a persistent session (so what is published while it is itself
    reconnecting after an outage waits for it at the broker), reconnecting every 50 ms at most, as the hub
    of either gateway would. `reply` lets a side answer requests (the ThingsBoard platform stub)."""

    def __init__(self, port: int, topics: list[str], client_id: str,
                 reply: Callable[[paho.Client, paho.MQTTMessage], None] | None = None) -> None:
        self.port = port
        self.topics = topics
        self.reply = reply
        self.arrivals: list[Arrival] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self._client.reconnect_delay_set(0.05, 0.05)  # type: ignore[arg-type]  # paho takes floats here
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._connected = threading.Event()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])
            self.connects += 1
            self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        at = time.monotonic()
        with self._lock:
            self.arrivals.append(Arrival(at, msg.topic, bytes(msg.payload), bool(msg.dup)))
        if self.reply is not None:
            self.reply(client, msg)

    def start(self, timeout: float = 20.0) -> Subscriber:
        self._client.connect("127.0.0.1", self.port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise RuntimeError(f"the measuring subscriber could not connect to 127.0.0.1:{self.port}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def since(self, index: int) -> list[Arrival]:
        with self._lock:
            return self.arrivals[index:]

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)


@dataclass(frozen=True, slots=True)
class ProcReading:
    at: float
    cpu_s: float  # user + system
    rss_kb: int
    hwm_kb: int


def read_proc(pid: int) -> ProcReading:
    """CPU seconds (utime + stime) and resident memory of one process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return ProcReading(time.monotonic(), cpu, rss, hwm)


def poll_rates(result: SideResult, before: dict[int, int], after: dict[int, int], lit: list[int],
               seconds: float) -> None:
    """Requests the simulator served per module per second over a window, over all modules and over those
    showing a job (`before`/`after`: its per-unit request counters at both ends)."""
    units = set(before) | set(after)
    total = sum(after.get(u, 0) - before.get(u, 0) for u in units)
    lit_total = sum(after.get(u, 0) - before.get(u, 0) for u in lit)
    result.polls_per_module_s = total / max(1, len(units)) / seconds
    result.polls_per_lit_module_s = lit_total / len(lit) / seconds if lit else 0.0
    result.lit_modules = len(lit)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def until(pred: Callable[[], object], what: str, timeout: float) -> None:
    """Poll a condition that spans processes (a register, a subscriber's list); a clear error on timeout."""
    try:
        async with asyncio.timeout(timeout):
            while not pred():  # the state lives in other threads and processes
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}") from None


@dataclass(slots=True)
class SideResult:
    """What one gateway did in one run (one poll interval)."""

    name: str
    poll_ms: int
    latencies_ms: list[float]
    cpu_idle_pct: float = 0.0  # CPU while polling with no presses, % of one core
    polls_per_module_s: float = 0.0  # Modbus requests the simulator served per module per second, same window
    polls_per_lit_module_s: float = 0.0  # the same over the modules showing a job (where a key press counts)
    lit_modules: int = 0
    cpu_run_s: float = 0.0  # user + system over the whole run, start-up included
    wall_run_s: float = 0.0
    rss_mb: float = 0.0
    hwm_mb: float = 0.0
    outage_s: float = 0.0
    outage_presses: int = 0
    first_event_after_outage_s: float | None = None
    all_events_after_outage_s: float | None = None
    lost: int = 0
    duplicated: int = 0  # events the gateway published twice (a second PUBLISH, not a broker redelivery)
    redelivered: int = 0  # the same event again from the broker to the meter with DUP set (not the gateway's doing)
    notes: str = ""

    def figures(self) -> dict[str, Any]:
        lat = self.latencies_ms
        out: dict[str, Any] = {
            "poll_ms": self.poll_ms, "presses": len(lat),
            "latency_p50_ms": round(pct(lat, 50), 1) if lat else None,
            "latency_p99_ms": round(pct(lat, 99), 1) if lat else None,
            "latency_max_ms": round(max(lat), 1) if lat else None,
            "cpu_idle_pct": round(self.cpu_idle_pct, 1), "polls_per_module_s": round(self.polls_per_module_s, 1),
            "polls_per_lit_module_s": round(self.polls_per_lit_module_s, 1), "lit_modules": self.lit_modules,
            "cpu_run_s": round(self.cpu_run_s, 2),
            "wall_run_s": round(self.wall_run_s, 1), "rss_mb": round(self.rss_mb, 1), "hwm_mb": round(self.hwm_mb, 1),
        }
        if self.outage_s:
            out.update({"outage_s": self.outage_s, "outage_presses": self.outage_presses,
                        "first_event_after_outage_s": (round(self.first_event_after_outage_s, 2)
                                                       if self.first_event_after_outage_s is not None else None),
                        "all_events_after_outage_s": (round(self.all_events_after_outage_s, 2)
                                                      if self.all_events_after_outage_s is not None else None),
                        "lost": self.lost, "duplicated": self.duplicated, "redelivered": self.redelivered})
        if self.notes:
            out["notes"] = self.notes
        return out
