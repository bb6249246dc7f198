"""A floor that cannot be rebuilt from the journal must not leave the gateway refusing every change for ever:
after RECOVER_TRIES the service gives up and the gateway stops with an error (systemd restarts it)."""

from __future__ import annotations

import asyncio

import pytest

from gateway import service as service_mod
from gateway.app import App
from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain.change import Change
from gateway.domain.floor import Floor


async def test_gateway_stops_with_an_error_when_the_floor_cannot_be_rebuilt(
        cfg: Config, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "RECOVER_RETRY_S", 0.001)
    monkeypatch.setattr(service_mod, "RECOVER_MAX_S", 0.001)
    monkeypatch.setattr(service_mod, "RECOVER_TRIES", 3)
    app = App(cfg, clock, connect_mqtt=False, web=False, devices=False, daily_checks=False)
    run = asyncio.create_task(app.run(install_signals=False))
    async with asyncio.timeout(30):
        await app.ready.wait()
    svc = app.service
    assert svc is not None
    reloads = 0

    async def broken_reload() -> None:
        nonlocal reloads
        reloads += 1
        raise OSError("disk read error")
    monkeypatch.setattr(svc, "reload", broken_reload)

    def op(floor: Floor, change: Change) -> None:
        change.emit("test.event", {})
        raise RuntimeError("a bug in the domain")  # memory may be ahead of disk: the floor is rebuilt
    with pytest.raises(RuntimeError):
        await svc.execute(op)
    with pytest.raises(BaseExceptionGroup) as stopped:
        async with asyncio.timeout(30):
            await run
    assert stopped.group_contains(RuntimeError, match="could not be rebuilt from the journal")
    assert svc.gave_up.is_set() and reloads >= 3


async def test_a_rebuild_that_succeeds_after_failures_does_not_give_up(
        cfg: Config, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "RECOVER_RETRY_S", 0.001)
    monkeypatch.setattr(service_mod, "RECOVER_MAX_S", 0.001)
    app = App(cfg, clock, connect_mqtt=False, web=False, devices=False, daily_checks=False)
    run = asyncio.create_task(app.run(install_signals=False))
    try:
        async with asyncio.timeout(30):
            await app.ready.wait()
        svc = app.service
        assert svc is not None
        real_reload, fails = svc.reload, 2

        async def flaky_reload() -> None:
            nonlocal fails
            if fails:
                fails -= 1
                raise OSError("disk read error")
            await real_reload()
        monkeypatch.setattr(svc, "reload", flaky_reload)

        def op(floor: Floor, change: Change) -> None:
            change.emit("test.event", {})
            raise RuntimeError("a bug in the domain")
        with pytest.raises(RuntimeError):
            await svc.execute(op)

        def ok(floor: Floor, change: Change) -> None:
            change.emit("test.event", {})
        async with asyncio.timeout(30):
            await svc.execute(ok)  # waits for the rebuild, then commits
        assert fails == 0 and not svc.gave_up.is_set() and not run.done()
    finally:
        app.stop()
        await run
