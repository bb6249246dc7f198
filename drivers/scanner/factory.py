"""One reader from one `[[scanners]]` entry. The settings are taken structurally (anything with these
attributes, such as `gateway.config.ScannerConfig`), so drivers do not depend on the gateway."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from drivers.scanner.hid_reader import HidScanner
from drivers.scanner.reader import Backoff, ReconnectingReader, ScanCallback, StatusCallback
from drivers.scanner.serial_reader import SerialScanner


class ScannerSettings(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def port(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def baudrate(self) -> int: ...
    @property
    def terminator(self) -> str: ...
    @property
    def layout(self) -> str: ...
    @property
    def gs_substitute(self) -> str: ...


def make_reader(settings: ScannerSettings, on_scan: ScanCallback, on_status: StatusCallback | None = None, *,
                clock: Callable[[], float] = time.monotonic, backoff: Backoff | None = None) -> ReconnectingReader:
    if settings.kind == "serial":
        return SerialScanner(settings.id, settings.port, on_scan, on_status, baudrate=settings.baudrate,
                             terminator=settings.terminator, clock=clock, backoff=backoff)
    if settings.kind == "hid":
        return HidScanner(settings.id, settings.path, on_scan, on_status, layout=settings.layout,
                          gs_substitute=settings.gs_substitute, clock=clock, backoff=backoff)
    raise ValueError(f"scanner kind must be serial or hid; got {settings.kind!r}")
