"""/metrics in the Prometheus text exposition format (version 0.0.4), written by hand: a few dozen lines
from figures the parts already keep, without a client library or a second registry to keep in step.

Counters come from the parts' own counts (they restart at zero with the gateway, as Prometheus expects).
Scan latency is given as quantiles over the most recent scans (up to 10,000 per source) in a gauge,
because the parts keep a window of recent values, not a cumulative histogram. No operator ids appear
here: /metrics is meant for monitoring, not for watching people.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.domain.model import ORDER_STATES
from gateway.web.state import WebState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUANTILES = (0.5, 0.9, 0.99)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lbl = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lbl}}} {_num(value)}" if lbl else f"{name} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def _quantiles(values: Iterable[float]) -> list[tuple[float, float]]:
    xs = sorted(values)
    if not xs:
        return []
    return [(q, xs[min(len(xs) - 1, int(q * len(xs)))]) for q in QUANTILES]


def sync_backlog(web: WebState) -> tuple[int, int]:
    """(events the hub has not acked, the highest seq it has acked), from the journal: its last seq, and the
    hub's ack as stored in its meta (`hub_acked_seq`) or, newer, as the running hub link holds it. Without
    a hub link (`floorgate demo --no-broker`) nothing can ack, so the stored ack stands and every event
    committed since is pending."""
    j = web.service.journal
    try:
        acked = int(j.meta.get("hub_acked_seq", "0"))
    except ValueError:
        acked = 0
    link = web.gw.link
    if link is not None:
        acked = max(acked, int(link.publisher.hub_acked))
    return max(j.last_seq - acked, 0), acked


def render(web: WebState) -> str:
    gw: Any = web.gw
    floor = web.service.floor
    registry = gw.registry
    o = _Out()
    scanners = [d for d in registry.devices.values() if d.kind == "scanner"]
    o.family("floorgate_scans_total", "counter", "Scans taken through the scan pipeline.",
             [*(({"source": "scanner", "device": d.device_id}, d.scans) for d in scanners),
              ({"source": "page", "device": "pages"}, web.pages.scans)])
    o.family("floorgate_scan_rejects_total", "counter", "Scans refused (scan.rejected).",
             [*(({"source": "scanner", "device": d.device_id}, d.rejects) for d in scanners),
              ({"source": "page", "device": "pages"}, web.pages.rejects)])
    lat = [({"source": "scanner", "quantile": str(q)}, v) for q, v in _quantiles(registry.latencies)]
    lat += [({"source": "page", "quantile": str(q)}, v) for q, v in _quantiles(web.pages.latencies)]
    o.family("floorgate_scan_latency_recent_seconds", "gauge",
             "Scan latency (scanner: last byte to stored; page: request to stored) over recent scans.", lat)
    j = web.service.journal
    o.family("floorgate_journal_last_seq", "gauge", "Last committed event seq.", [({}, j.last_seq)])
    pending, acked = sync_backlog(web)
    o.family("floorgate_sync_pending_events", "gauge", "Events not yet acked by the hub (pending sync).",
             [({}, pending)])
    o.family("floorgate_sync_hub_acked_seq", "gauge", "Highest seq the hub has acked.", [({}, acked)])
    link = gw.link
    o.family("floorgate_hub_connected", "gauge", "1 while the MQTT link to the broker is up.",
             [({}, link is not None and link.mqtt.connected.is_set())])
    buses = []
    fleet = gw.fleet
    if fleet is not None and fleet.ptl is not None:
        buses = [(bus_id, bus.snapshot()) for bus_id, bus in fleet.ptl.buses.items()]
    o.family("floorgate_ptl_bus_transactions_total", "counter", "Modbus transactions per PTL bus.",
             [({"bus": b}, s["transactions"]) for b, s in buses])
    o.family("floorgate_ptl_bus_misses_total", "counter", "Modbus transactions without a usable answer.",
             [({"bus": b}, s["misses"]) for b, s in buses])
    o.family("floorgate_ptl_module_misses_total", "counter", "Missed transactions per PTL module.",
             [({"module": f"{b}-u{int(u):03d}"}, m["misses"]) for b, s in buses for u, m in s["modules"].items()])
    # Presses latched under a job the module no longer should show (pressed before the new job reached it):
    # dropped by design, counted here so that a bus where pickers often lose presses can be seen.
    o.family("floorgate_ptl_stale_keys_total", "counter", "Key presses dropped as stale, per PTL bus.",
             [({"bus": b}, sum(int(m.get("stale_keys", 0)) for m in s["modules"].values())) for b, s in buses])
    ticker = gw.ticker
    o.family("floorgate_dispatch_decisions_total", "counter", "Dispatch decisions applied (assign, move, "
             "escalate, breaker).", [({}, ticker.decisions if ticker is not None else 0)])
    states = dict.fromkeys(ORDER_STATES, 0)
    for order in floor.orders.values():
        states[order.state] = states.get(order.state, 0) + 1
    o.family("floorgate_orders", "gauge", "Orders on this gateway by state.",
             [({"state": s}, n) for s, n in states.items()])
    sev = {"info": 0, "warning": 0, "critical": 0}
    for a in floor.alarms.values():
        sev[a.severity] = sev.get(a.severity, 0) + 1
    o.family("floorgate_alarms_active", "gauge", "Alarms up, by severity.",
             [({"severity": s}, n) for s, n in sev.items()])
    kinds: dict[str, list[int]] = {}
    for d in registry.devices.values():
        k = kinds.setdefault(d.kind, [0, 0])
        k[0] += 1
        k[1] += 1 if d.online else 0
    o.family("floorgate_devices", "gauge", "Devices by kind.", [({"kind": k}, v[0]) for k, v in sorted(kinds.items())])
    o.family("floorgate_devices_online", "gauge", "Devices online by kind.",
             [({"kind": k}, v[1]) for k, v in sorted(kinds.items())])
    o.family("floorgate_storage_bytes", "gauge", "Database size as counted against sync.max_db_mb.",
             [({}, web.service.storage_bytes)])
    o.family("floorgate_web_sessions", "gauge", "Open page sessions.", [({}, len(web.sessions.all()))])
    o.family("floorgate_web_actions_total", "counter", "Page actions applied / answered again from the store.",
             [({"result": "applied"}, web.actions.applied), ({"result": "replayed"}, web.actions.replayed)])
    return o.text()
