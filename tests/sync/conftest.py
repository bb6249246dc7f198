"""Fixtures for MQTT tests: a private Mosquitto per test, a gateway in this process, a hub simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.sync.mqtt import MqttSettings
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.conftest import make_config


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def gateway_config(tmp_path: Path, broker: Broker, **over: Any) -> Config:
    mqtt = {"port": broker.port, **over.pop("mqtt", {})}
    return make_config(tmp_path / "gw", mqtt=mqtt, **over)


class RunningApp:
    def __init__(self, app: App, task: asyncio.Task[None]) -> None:
        self.app = app
        self.task = task

    async def stop(self) -> None:
        self.app.stop()
        await asyncio.wait_for(self.task, 30)


@contextlib.asynccontextmanager
async def running_gateway(cfg: Config, clock: Clock | None = None) -> AsyncIterator[App]:
    app = App(cfg, clock or SystemClock())
    task = asyncio.create_task(app.run(install_signals=False), name="test-gateway")
    try:
        await asyncio.wait_for(app.ready.wait(), 30)
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def running_hub(port: int, site: str = "dc1", gateway: str = "zone-a", **kw: Any) -> AsyncIterator[HubSim]:
    hub = HubSim(MqttSettings(port=port, client_id=f"hubsim-{site}-{gateway}"), site, gateway, **kw)
    task = asyncio.create_task(hub.run(), name="test-hub")
    try:
        await asyncio.wait_for(hub.mqtt.connected.wait(), 30)
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
