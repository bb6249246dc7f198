"""Alarms: conditions a person must see. Raising an alarm that is already up changes nothing, so callers
can raise on every check without flooding the hub."""

from __future__ import annotations

from datetime import datetime

from gateway.clock import rfc3339
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import Alarm

SEVERITIES = ("info", "warning", "critical")


def raise_alarm(floor: Floor, change: Change, alarm_id: str, code: str, severity: str, message: str,
                now: datetime) -> bool:
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {SEVERITIES}")
    current = floor.alarms.get(alarm_id)
    if current is not None and current.severity == severity and current.message == message:
        return False
    alarm = Alarm(alarm_id, code, severity, message, rfc3339(now))
    floor.alarms[alarm_id] = alarm
    change.save("alarm", alarm_id, alarm)
    change.emit("alarm.raised", {"alarm_id": alarm_id, "code": code, "severity": severity, "message": message})
    change.signal(("alarm", alarm))
    return True


def clear_alarm(floor: Floor, change: Change, alarm_id: str, message: str = "") -> bool:
    alarm = floor.alarms.pop(alarm_id, None)
    if alarm is None:
        return False
    change.delete("alarm", alarm_id)
    text = message or f"cleared: {alarm.message}"
    change.emit("alarm.cleared", {"alarm_id": alarm_id, "code": alarm.code, "severity": alarm.severity,
                                  "message": text})
    change.signal(("alarm_cleared", alarm, text))
    return True
