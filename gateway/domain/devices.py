"""Device health as the domain records it: `device.online` / `device.offline` once per change, and an alarm
for a device that stays offline too long (a scanner left unplugged, a module gone from the bus)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import At, DeviceState, Light

KINDS = ("scanner", "ptl", "scale", "bus", "broker", "printer")
BUS_SETTLE_S = 60.0  # after a bus is back, its modules have this long to answer before their own alarms
BROKER = "broker"  # the hub link's broker, as a device (SPEC kind `broker`)
BROKER_CHECK_ALARM = "doctor.broker"  # the start-up check's alarm that it could not be reached
DEVICE_ALARMS = ("device_offline:", "device_fault:")


def device_status(floor: Floor, change: Change, device_id: str, kind: str, online: bool, detail: str,
                  at: At) -> bool:
    st = floor.devices.get(device_id)
    if st is not None and st.online == online:
        st.detail = detail
        return False
    if st is None:
        st = floor.devices[device_id] = DeviceState(device_id, kind, online, detail, at.mono)
    else:
        st.online, st.detail, st.since_mono = online, detail, at.mono
        if not online:
            st.errors += 1
    change.emit("device.online" if online else "device.offline",
                {"device_id": device_id, "kind": kind, "detail": detail})
    # The alarm is cleared also when it was raised before a restart: device states are not kept across one
    # (every device reports afresh), the alarm is, and it must not outlive the outage.
    if online and (st.alarmed or f"device_offline:{device_id}" in floor.alarms):
        st.alarmed = False
        clear_alarm(floor, change, f"device_offline:{device_id}", f"{device_id} is back")
    return True


def module_id(light: Light) -> str:
    """A PTL module's device id: `{bus}-u{unit:03d}`."""
    return f"{light.bus}-u{light.unit:03d}"


def bus_of(device_id: str) -> str:
    """The bus of a PTL module's device id (the inverse of `module_id`'s naming)."""
    return device_id.rpartition("-u")[0]


def offline_alarms(floor: Floor, change: Change, at: At) -> None:
    limit = floor.rules.device_offline_alarm_s
    # A bus whose link is down has its own alarm, which says it all: one alarm (and one mail) per module besides
    # it was 21 for a bus of 20. A module still dark once its bus is back gets its own alarm then.
    # Nor just after it is back: its modules answer their first probe over the next second or so, and each had
    # an alarm (and a mail) raised and cleared in that moment.
    quiet = {st.device_id for st in floor.devices.values()
             if st.kind == "bus" and (not st.online or at.mono - st.since_mono < BUS_SETTLE_S)}
    for st in floor.devices.values():
        if st.kind == "ptl" and quiet and bus_of(st.device_id) in quiet:
            continue
        if st.device_id == BROKER and BROKER_CHECK_ALARM in floor.alarms:
            continue  # the start-up check's critical alarm already says the broker cannot be reached: one cause
        if not st.online and not st.alarmed and at.mono - st.since_mono >= limit:
            st.alarmed = True
            if f"device_offline:{st.device_id}" in floor.alarms:
                continue  # still up from before a restart: said once, not again with a new duration
            minutes = (at.mono - st.since_mono) / 60
            raise_alarm(floor, change, f"device_offline:{st.device_id}", "device_offline", "warning",
                        f"{st.kind} {st.device_id} has been offline for {minutes:.0f} min ({st.detail}); "
                        "check its cable and power", at.wall)


def fault_alarm_id(device_id: str) -> str:
    return f"device_fault:{device_id}"


def device_fault(floor: Floor, change: Change, device_id: str, kind: str, fault: bool, at: At,
                 detail: str = "") -> bool:
    """A device that answers but reports a fault of its own (a PTL module's status bit 8): it still takes
    jobs, so nothing stops, but a technician must look at it before a picker trusts its display. `detail`
    names another fault of a device that answers (a PTL module refusing its job write)."""
    alarm_id = fault_alarm_id(device_id)
    if fault and detail:
        return raise_alarm(floor, change, alarm_id, "device_fault", "warning",
                           f"{kind} {device_id} {detail} Check its model and firmware on the technician page",
                           at.wall)
    if fault:
        return raise_alarm(floor, change, alarm_id, "device_fault", "warning",
                           f"{kind} {device_id} reports a fault; run its self-test from the technician page, and "
                           "replace it if the fault stays", at.wall)
    return clear_alarm(floor, change, alarm_id, f"{device_id} no longer reports a fault")


def broker_status(floor: Floor, change: Change, online: bool, detail: str, at: At) -> bool:
    """The broker as a device: offline and online like any other (the hub reads the outage's start and end from
    the events once the link is back), with the offline alarm past `device_offline_alarm_min`. Reachable again,
    it also clears the start-up check's alarm, which stayed up, critical, until the next daily check."""
    changed = device_status(floor, change, BROKER, BROKER, online, detail, at)
    if online:
        clear_alarm(floor, change, BROKER_CHECK_ALARM, "the broker is reachable again")
    return changed


def forget_devices(floor: Floor, change: Change, configured: Callable[[str], bool]) -> list[str]:
    """Devices no longer in the config: their offline and fault alarms clear (they stayed up for good, as only
    the device coming back cleared them), and their state is dropped. Returns the alarms cleared."""
    cleared = []
    for alarm_id in list(floor.alarms):
        for prefix in DEVICE_ALARMS:
            device_id = alarm_id[len(prefix):]
            if alarm_id.startswith(prefix) and device_id != BROKER and not configured(device_id):
                clear_alarm(floor, change, alarm_id, f"{device_id} is no longer in the config")
                cleared.append(alarm_id)
        printer_id = alarm_id[len("printer:"):]
        if alarm_id.startswith("printer:") and not configured(printer_id):
            # Its unprinted labels are kept: a printer still at their station clears each one it prints. The
            # clearing message names them, for whoever reprints them.
            left = [d for d in floor.extra.get(UNPRINTED, {}).values() if d.get("printer") == printer_id]
            orders = ", ".join(str(d["order_id"]) for d in left[:UNPRINTED_SHOWN])
            clear_alarm(floor, change, alarm_id, f"{printer_id} is no longer in the config" + (
                f"; reprint the labels of orders {orders}{' and more' if len(left) > UNPRINTED_SHOWN else ''} "
                "at their station" if left else ""))
            cleared.append(alarm_id)
    for device_id in [d for d in floor.devices if d != BROKER and not configured(d)]:
        st = floor.devices.pop(device_id)
        if st.online:  # the hub's last word on it was `online`
            change.emit("device.offline", {"device_id": device_id, "kind": st.kind,
                                           "detail": "removed from the config"})
    return cleared


UNPRINTED = "unprinted_label"  # the doc kind: a parcel whose label a printer could not print, until it does
UNPRINTED_SHOWN = 5  # labels named in the printer's alarm; the rest are counted


class _Unprinted:
    def __init__(self, doc: dict[str, str]) -> None:
        self.doc = doc

    def to_doc(self) -> dict[str, str]:
        return self.doc


def label_failed(floor: Floor, change: Change, printer_id: str, station: str, parcel: dict[str, object],
                 error: str, at: At) -> bool:
    """A label not printed: kept (stored) until it is, named in the printer's alarm with every other label still
    unprinted, and told at its station. The alarm named the last failure only: after a second parcel's label
    failed, the first unlabelled parcel was forgotten, and the packing page kept its green "packed"."""
    sscc, order_id = str(parcel["sscc"]), str(parcel["order_id"])
    doc = {"printer": printer_id, "station": station, "order_id": order_id, "sscc": sscc}
    floor.extra.setdefault(UNPRINTED, {})[sscc] = doc
    change.save(UNPRINTED, sscc, _Unprinted(doc))
    change.signal(("station_feedback", station, False, f"label for order {order_id} (SSCC {sscc}) not printed: "
                                                       f"{error}; press Reprint label once the printer is back",
                   "printer"))
    return _label_alarm(floor, change, printer_id, error, at)


def label_printed(floor: Floor, change: Change, printer_id: str, sscc: str, at: At) -> bool:
    """A label printed: that parcel is labelled; the printer's alarm goes once none of its labels is left."""
    docs = floor.extra.get(UNPRINTED, {})
    doc = docs.pop(sscc, None)
    if doc is not None:
        change.delete(UNPRINTED, sscc)
    changed = _label_alarm(floor, change, printer_id, "", at)
    if doc is not None and doc.get("printer") != printer_id:  # kept under another printer of the station
        changed = _label_alarm(floor, change, str(doc.get("printer")), "", at) or changed
    return changed


def _label_alarm(floor: Floor, change: Change, printer_id: str, error: str, at: At) -> bool:
    """Raise, change or clear the printer's alarm for what it has left unprinted; returns whether it changed."""
    alarm_id = f"printer:{printer_id}"
    left = [d for d in floor.extra.get(UNPRINTED, {}).values() if d.get("printer") == printer_id]
    if not left:
        return clear_alarm(floor, change, alarm_id, f"{printer_id}: every label printed")
    named = ", ".join(f"order {d['order_id']} (SSCC {d['sscc']})" for d in left[:UNPRINTED_SHOWN])
    more = f" and {len(left) - UNPRINTED_SHOWN} more" if len(left) > UNPRINTED_SHOWN else ""
    why = f" ({error})" if error else ""
    return raise_alarm(floor, change, alarm_id, "printer_failed", "warning",
                       f"{len(left)} label(s) not printed on {printer_id}{why}; {named}{more}: reprint them from the "
                       "packing page", at.wall)
