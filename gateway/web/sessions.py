"""Page sessions and the login rate limit, in memory.

A session is a random token in an HttpOnly cookie; the store keeps only its SHA-256, so a memory dump or
a log line never holds a usable token. A session carries who logged in and how (badge on a PDA or a
packing page, or password), never roles: those are read from master data on every request, so a role
taken away by the hub applies at once. A gateway restart ends every page session, and their floor sessions
with them (`domain.sessions.end_page_sessions`): people log in again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from gateway.clock import Clock, rfc3339

MAX_SESSIONS = 10_000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(slots=True)
class WebSession:
    key: str  # sha256 of the cookie token
    operator_id: str
    kind: Literal["badge", "password"]
    station: str | None  # "pick" or a packing station id, for badge sessions
    device_id: str | None  # the floor device of a badge session ("pda-1a2b3c4d")
    csrf: str
    expires_mono: float
    expires_at: str
    language: str | None = None  # chosen on the page; else the operator's from master data


class SessionStore:
    def __init__(self, clock: Clock, ttl_s: float) -> None:
        self.clock = clock
        self.ttl_s = ttl_s
        self._sessions: dict[str, WebSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, operator_id: str, kind: Literal["badge", "password"], station: str | None = None,
               device_id: str | None = None) -> tuple[str, WebSession]:
        self._expire()
        if len(self._sessions) >= MAX_SESSIONS:  # bounded: drop the oldest
            oldest = min(self._sessions.values(), key=lambda s: s.expires_mono)
            del self._sessions[oldest.key]
        token = secrets.token_urlsafe(32)
        s = WebSession(_digest(token), operator_id, kind, station, device_id, secrets.token_urlsafe(24),
                       self.clock.monotonic() + self.ttl_s,
                       rfc3339(self.clock.now() + timedelta(seconds=self.ttl_s)))
        self._sessions[s.key] = s
        return token, s

    def get(self, token: str | None) -> WebSession | None:
        if not token or len(token) > 200:
            return None
        s = self._sessions.get(_digest(token))
        if s is None:
            return None
        if self.clock.monotonic() >= s.expires_mono:
            del self._sessions[s.key]
            return None
        return s

    def drop(self, session: WebSession) -> None:
        self._sessions.pop(session.key, None)

    def drop_device(self, device_id: str) -> int:
        """End the page sessions of a floor device (its operator was logged out: badge, idle, replaced)."""
        gone = [k for k, s in self._sessions.items() if s.device_id == device_id]
        for k in gone:
            del self._sessions[k]
        return len(gone)

    def all(self) -> list[WebSession]:
        self._expire()
        return list(self._sessions.values())

    def _expire(self) -> None:
        now = self.clock.monotonic()
        for k in [k for k, s in self._sessions.items() if now >= s.expires_mono]:
            del self._sessions[k]


class LoginLimiter:
    """Failed logins per client address and per account (operator id or badge) in a sliding window: a
    guesser is slowed down whichever of the two it varies."""

    def __init__(self, clock: Clock, window_s: float = 300.0, per_ip: int = 20, per_account: int = 5) -> None:
        self.clock = clock
        self.window_s = window_s
        self.limits = {"ip": per_ip, "account": per_account}
        self._fails: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        cutoff = self.clock.monotonic() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, ip: str, account: str) -> float | None:
        """Seconds to wait when either limit is reached, else None."""
        wait = 0.0
        for key in (("ip", ip), ("account", account)):
            q = self._recent(key)
            if len(q) >= self.limits[key[0]]:
                wait = max(wait, q[0] + self.window_s - self.clock.monotonic())
        return max(wait, 1.0) if wait > 0 else None

    def failed(self, ip: str, account: str) -> None:
        if len(self._fails) > 50_000:
            for key in list(self._fails):
                self._recent(key)
        now = self.clock.monotonic()
        for key in (("ip", ip), ("account", account)):
            self._fails.setdefault(key, deque(maxlen=100)).append(now)

    def succeeded(self, account: str) -> None:
        self._fails.pop(("account", account), None)
