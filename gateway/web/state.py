"""Everything the pages and the API share inside the gateway process, built once per web server."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from gateway.service import FloorService
from gateway.web.actions import Actions
from gateway.web.live import Live
from gateway.web.sessions import LoginLimiter, SessionStore


@dataclass
class PageCounters:
    """Scans that came from the pages (the scanners' own counts live in the device registry)."""

    scans: int = 0
    rejects: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # request in -> stored


class WebState:
    def __init__(self, gw: Any) -> None:
        service: FloorService = gw.service
        self.gw = gw
        self.service = service
        self.clock = gw.clock
        self.secure_cookies = bool(gw.cfg.http.tls_cert_file and gw.cfg.http.tls_key_file)
        self.sessions = SessionStore(gw.clock, gw.cfg.http.session_ttl_min * 60.0)
        self.limiter = LoginLimiter(gw.clock)
        self.actions = Actions(service)
        self.live = Live(service, gw.clock, self.sessions)
        self.pages = PageCounters()


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state
