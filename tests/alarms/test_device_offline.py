"""A device offline for long reaches people: the whole gateway (real broker and hub simulator, real webhook
and SMTP receivers, a scanner on a pseudo-terminal that is unplugged), time moved on the gateway's clock."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App
from gateway.clock import ManualClock
from gateway.domain.devices import device_status, offline_alarms
from gateway.service import FloorService
from simulators.hub import HubSim
from simulators.scanner import VirtualSerialScanner
from tests.alarms.conftest import HttpReceiver, SmtpReceiver, alarms_config, statuses, until
from tests.brokers import Broker
from tests.sync.conftest import gateway_config, running_gateway, running_hub

pytestmark = pytest.mark.timeout(120)
ALARM = "device_offline:scan-9"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def hub_events(hub: HubSim, type_: str) -> list[dict[str, Any]]:
    return [ev for view in hub.journals.values() for _, ev in sorted(view.events.items()) if ev["type"] == type_]


def offline(app: App) -> bool:
    assert app.service is not None
    st = app.service.floor.devices.get("scan-9")
    return st is not None and not st.online


async def test_a_scanner_offline_too_long_raises_an_alarm_to_hub_webhook_and_mail_and_clears_when_back(
        tmp_path: Path, broker: Broker, http: HttpReceiver, smtp: SmtpReceiver, password_file: Path) -> None:
    clock = ManualClock()
    scanner = VirtualSerialScanner(tmp_path / "scan-9")
    scanner.plug()
    cfg = gateway_config(tmp_path, broker, scanners=[{"id": "scan-9", "port": scanner.path}],
                         alarms=alarms_config(webhooks=[http.url], smtp_port=smtp.port, password_file=password_file))
    assert cfg.picking.device_offline_alarm_min == 10
    try:
        async with running_gateway(cfg, clock) as app, running_hub(broker.port) as hub:
            assert app.service is not None and app.ticker is not None
            service = app.service
            await until(lambda: "scan-9" in service.floor.devices and service.floor.devices["scan-9"].online,
                        "scanner online")
            scanner.unplug()  # the cable is pulled
            await until(lambda: offline(app), "scanner reported offline")
            await hub.wait_until(lambda: bool(hub_events(hub, "device.offline")))

            clock.advance(599)  # one second short: nothing yet
            await app.ticker.tick()
            assert ALARM not in service.floor.alarms and statuses(service) == []
            clock.advance(1)
            await app.ticker.tick()
            alarm = service.floor.alarms[ALARM]
            assert (alarm.code, alarm.severity) == ("device_offline", "warning")
            assert alarm.message.startswith("scanner scan-9 has been offline for 10 min (")

            # To the hub, as an event; to each configured channel, with its delivery state in the journal.
            await hub.wait_until(lambda: bool(hub_events(hub, "alarm.raised")))
            (raised,) = hub_events(hub, "alarm.raised")
            assert raised["data"] == {"alarm_id": ALARM, "code": "device_offline", "severity": "warning",
                                      "message": alarm.message}
            await until(lambda: statuses(service) == ["delivered", "delivered"], "raise delivered to both")
            (hook,) = [r.json() for r in http.accepted]
            assert (hook["alarm_id"], hook["state"], hook["message"]) == (ALARM, "raised", alarm.message)
            (mail,) = smtp.mails
            assert "scan-9" in str(mail.message["Subject"]) + mail.message.get_content()

            # Raised once, however often the floor is checked.
            clock.advance(600)
            await app.ticker.tick()
            assert len(service.floor.alarms) == 1

            scanner.plug()  # back
            await until(lambda: ALARM not in service.floor.alarms, "alarm cleared when the scanner is back")
            await hub.wait_until(lambda: bool(hub_events(hub, "alarm.cleared")))
            (cleared,) = hub_events(hub, "alarm.cleared")
            assert cleared["data"]["alarm_id"] == ALARM and cleared["data"]["message"] == "scan-9 is back"
            assert cleared["seq"] > hub_events(hub, "device.online")[-1]["seq"] > raised["seq"]
            await until(lambda: statuses(service) == ["delivered"] * 4, "clear delivered to both")
            assert [r.json()["state"] for r in http.accepted] == ["raised", "cleared"]
            assert len(hub_events(hub, "alarm.raised")) == 1 and hub.invalid == []
    finally:
        scanner.unplug()


async def test_the_alarm_of_an_outage_across_a_restart_is_not_repeated_and_clears_when_the_device_is_back(
        service: FloorService, clock: ManualClock) -> None:
    """Device states are not kept across a restart (each device reports afresh); the alarm is. It is neither
    raised a second time while the device stays away nor left up when the device returns."""
    def report(online: bool) -> Awaitable[bool]:
        at = service.at()
        return service.execute(lambda f, c: device_status(f, c, "bus-a-u007", "ptl", online, "no answer", at))

    def check() -> Awaitable[None]:
        at = service.at()
        return service.execute(lambda f, c: offline_alarms(f, c, at))

    await report(False)
    clock.advance(600)
    await check()
    assert "device_offline:bus-a-u007" in service.floor.alarms
    raised = await count(service, "alarm.raised")

    await service.reload()  # a restart: the module reports offline again, from scratch
    await report(False)
    clock.advance(600)
    await check()
    assert await count(service, "alarm.raised") == raised  # not again
    await service.reload()
    await report(True)  # back, first report after a restart
    assert service.floor.alarms == {}
    assert await count(service, "alarm.cleared") == 1


async def count(service: FloorService, type_: str) -> int:
    await service.journal.barrier()
    rows = await service.journal.reader.execute_fetchall("SELECT COUNT(*) FROM events WHERE type = ?", (type_,))
    return int(next(iter(rows))[0])
