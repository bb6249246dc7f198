"""Unprinted labels (gateway/domain/devices.py label_failed / label_printed, PrinterDevice.print), at the edges a
review found: a printed label whose record did not commit, two printers at one station, a printer taken out of
the config. The printer is a stub that fails or succeeds on demand; the service and journal are real."""
from __future__ import annotations

from typing import Any

from drivers.printer import PrinterUnreachable
from gateway.config import Config, PrinterConfig
from gateway.devices.packing import PrinterDevice
from gateway.devices.registry import DeviceRegistry
from gateway.domain.devices import UNPRINTED
from gateway.domain.sscc import make_sscc
from gateway.journal import JournalError
from tests.floor.conftest import Harness


class Stub:
    def __init__(self) -> None:
        self.up = False

    async def send(self, data: bytes) -> None:
        if not self.up:
            raise PrinterUnreachable("connection refused", "127.0.0.1", 9100)


def printer(h: Harness, cfg: Config, pid: str) -> tuple[PrinterDevice, Stub]:
    p = PrinterDevice(PrinterConfig(id=pid, station="pack-1", host="127.0.0.1"), cfg, h.service, DeviceRegistry())
    stub = Stub()
    p.printer = stub  # type: ignore[assignment]
    return p, stub


def parcel(n: int) -> dict[str, Any]:
    return {"sscc": make_sscc(0, "0614141", n), "order_id": f"O-{n}", "carton": None, "weight_g": None,
            "items": 1}


async def test_a_label_printed_whose_record_did_not_commit_is_recorded_with_the_next(h: Harness,
                                                                                     floor_cfg: Config) -> None:
    p, stub = printer(h, floor_cfg, "prn-1")
    assert not await p.print(parcel(1))
    assert "printer:prn-1" in h.floor.alarms
    stub.up = True
    real = h.service.journal.submit
    calls = 0

    async def fail_once(change: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise JournalError("disk I/O error")
        await real(change)
    h.service.journal.submit = fail_once  # type: ignore[method-assign,assignment]
    assert await p.print(parcel(1))  # the label IS printed now; only its record failed to commit
    await h.service.reload()  # what the service does after a failed commit: the floor from the journal
    assert await p.print(parcel(2))  # the printer works on: later labels print and commit
    docs = h.floor.extra.get(UNPRINTED, {})
    alarm = h.floor.alarms.get("printer:prn-1")
    assert parcel(1)["sscc"] not in docs and alarm is None, (docs, alarm and alarm.message)


async def test_a_label_printed_by_another_printer_of_its_station_clears_the_first_s_alarm(h: Harness,
                                                                               floor_cfg: Config) -> None:
    a, sa = printer(h, floor_cfg, "prn-a")
    b, _ = printer(h, floor_cfg, "prn-b")
    s = parcel(1)
    assert not await a.print(s)  # the "label" signal goes to every printer of the station: both fail
    assert not await b.print(s)
    sa.up = True  # prn-a is back; Reprint label sends to both (routes_pack.reprint)
    assert await a.print(s)
    docs = h.floor.extra.get(UNPRINTED, {})
    assert s["sscc"] not in docs  # the parcel is labelled: no longer kept ...
    alarm = h.floor.alarms.get("printer:prn-b")
    assert alarm is None or s["sscc"] not in alarm.message, alarm.message  # ... yet prn-b's alarm still names it


async def test_a_printer_removed_from_the_config_clears_its_alarm_naming_its_labels(h: Harness,
                                                                                    floor_cfg: Config) -> None:
    """Its alarm stayed up for good. It clears, naming the orders whose labels are still to print; the labels
    are kept, and a printer still at their station clears each one it prints."""
    from gateway.domain.devices import forget_devices

    p, _ = printer(h, floor_cfg, "prn-1")
    assert not await p.print(parcel(1))
    seq = h.seq
    await h.service.execute(lambda f, c: forget_devices(f, c, lambda d: False))  # SIGHUP: prn-1 is gone
    assert "printer:prn-1" not in h.floor.alarms
    cleared = [d for t, _, d in h.events(seq) if t == "alarm.cleared" and d["alarm_id"] == "printer:prn-1"]
    assert cleared and "reprint the labels of orders O-1" in cleared[0]["message"], cleared
    other, stub = printer(h, floor_cfg, "prn-2")
    stub.up = True
    assert await other.print(parcel(1))
    assert not h.floor.extra.get(UNPRINTED)
