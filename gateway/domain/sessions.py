"""Operator sessions per device (SPEC §6): a badge logs its operator in on that device; the same badge
again, another badge (`replaced`) or the idle timeout logs out. Breaks take a picker off dispatch without
counting against their index."""

from __future__ import annotations

from gateway.domain.change import Change
from gateway.domain.dispatch import PickerView
from gateway.domain.floor import Floor
from gateway.domain.model import At, Session
from gateway.domain.outcome import Outcome, Refused

PICK = "pick"
ROLES_FOR = {"pick": ("picker", "supervisor")}
PACK_ROLES = ("packer", "supervisor")


def allowed_roles(station: str) -> tuple[str, ...]:
    return ROLES_FOR.get(station, PACK_ROLES)


def is_picking(floor: Floor, operator_id: str) -> bool:
    """Logged in on a device of station `pick` (a scanner or the PDA page): where a picker can be given work."""
    return any(s.station == PICK for s in floor.sessions_of(operator_id))


def sync_picker(floor: Floor, operator_id: str, at: At) -> None:
    """Tell dispatch where this picker stands: logged in on a pick device or page, on break, held."""
    op = floor.md.operators.get(operator_id)
    zones = frozenset(op.zones) if op is not None else frozenset()
    picking = is_picking(floor, operator_id)
    state = floor.pickers.get(operator_id)
    held = f"operator:{operator_id}" in floor.holds
    floor.dispatch.set_picker(PickerView(operator_id, zones, logged_in=picking,
                                         on_break=bool(state and state.on_break), held=held), at.mono)


def login(floor: Floor, change: Change, device_id: str, station: str, operator_id: str, at: At,
          kind: str = "scanner") -> Outcome:
    op = floor.md.operators.get(operator_id)
    if op is None:
        raise Refused("unknown_barcode", "this badge belongs to no operator in master data")
    need = allowed_roles(station)
    if not set(op.roles) & set(need):
        raise Refused("not_allowed", f"{op.name or operator_id} may not work at {station} "
                                     f"(needs the role {' or '.join(need)})")
    current = floor.sessions.get(device_id)
    if current is not None and current.operator_id == operator_id:
        logout(floor, change, device_id, "badge", at)
        return Outcome.good(f"goodbye {op.name or operator_id}", "badge", operator_id=operator_id, login=False)
    if current is not None:
        logout(floor, change, device_id, "replaced", at)
    session = Session(device_id, operator_id, station, at.ts, kind, at.mono)
    floor.sessions[device_id] = session
    change.save("session", device_id, session)
    change.emit("operator.login", {"operator_id": operator_id, "device_id": device_id})
    if station == PICK:
        sync_picker(floor, operator_id, at)
        change.signal(("dispatch", "login"))
    return Outcome.good(f"hello {op.name or operator_id}", "badge", operator_id=operator_id, login=True)


def logout(floor: Floor, change: Change, device_id: str, reason: str, at: At) -> bool:
    session = floor.sessions.pop(device_id, None)
    if session is None:
        return False
    change.delete("session", device_id)
    change.emit("operator.logout", {"operator_id": session.operator_id, "device_id": device_id, "reason": reason})
    if session.station == PICK:
        sync_picker(floor, session.operator_id, at)
        change.signal(("dispatch", "logout"))
    change.signal(("logout", device_id, session.operator_id, reason))
    return True


def follow_masterdata(floor: Floor, change: Change, at: At) -> None:
    """Master data changed its operators: someone no longer in it, or no longer with a role for the station they
    are logged in at, is logged out (`manual`: nobody's badge did it; their unstarted tasks go back to dispatch),
    and every picker's zones are told to dispatch again. Before, a replace that dropped a logged-in picker left
    them logged in, with their tasks, until they logged out themselves."""
    for device_id, session in list(floor.sessions.items()):
        op = floor.md.operators.get(session.operator_id)
        if op is None or not set(op.roles) & set(allowed_roles(session.station)):
            logout(floor, change, device_id, "manual", at)
        elif session.station == PICK:
            sync_picker(floor, session.operator_id, at)


def idle_logouts(floor: Floor, change: Change, at: At) -> list[str]:
    """Log out every device idle for longer than `picking.idle_logout_min`."""
    limit = floor.rules.idle_logout_s
    idle = [d for d, s in floor.sessions.items() if at.mono - s.last_mono >= limit]
    for device_id in idle:
        logout(floor, change, device_id, "idle", at)
    return idle


def set_break(floor: Floor, change: Change, operator_id: str, on: bool, at: At) -> Outcome:
    picker = floor.picker(operator_id)
    if picker.on_break == on:
        return Outcome.good("already on break" if on else "not on break", "break", on_break=on)
    picker.on_break = on
    change.save("picker", operator_id, picker)
    change.emit("operator.break_started" if on else "operator.break_ended", {"operator_id": operator_id})
    sync_picker(floor, operator_id, at)
    change.signal(("dispatch", "break"))
    return Outcome.good("break started: no new work until you scan BREAK again" if on else "welcome back",
                        "break", on_break=on)


def touch(floor: Floor, device_id: str, at: At) -> Session | None:
    s = floor.sessions.get(device_id)
    if s is not None:
        s.last_mono = at.mono
    return s


def end_page_sessions(floor: Floor, change: Change, at: At) -> int:
    """At start: the floor sessions of pages (a PDA, a packing page) end with the run, as their page sessions
    (cookies, in memory) did. Kept, they outlived it: the picker badged in again on the PDA as a new device,
    logged out there, and still got work through the old session, until its idle logout. Reason `idle`: no one
    ended them, the session is simply gone (SPEC has no reason for a restart). Started work stays theirs, and
    is escalated only if they are not back within the period."""
    gone = [device_id for device_id, s in floor.sessions.items() if s.kind == "page"]
    for device_id in gone:
        logout(floor, change, device_id, "idle", at)
    return len(gone)
