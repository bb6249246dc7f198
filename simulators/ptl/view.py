"""Live terminal view of a simulated PTL bus: which lights are on, in which colour, quantity and pattern.

Plain ANSI escapes, no dependency. `render` is a pure function of the nodes and a time, so it is tested
like any other text; the CLI just prints it in place a few times a second.
"""

from __future__ import annotations

from firmware_stubs.ptl_node.registers import MODE_DONE, MODE_ERROR, MODE_INFO, MODE_JOB, Node

from .sim import Faults

COLOUR_NAMES = ("off", "red", "green", "blue", "yellow", "magenta", "cyan", "white")
PATTERN_NAMES = ("steady", "1Hz", "4Hz", "pulse")
MODE_NAMES = {0: "off", MODE_JOB: "job", MODE_INFO: "info", MODE_ERROR: "error", MODE_DONE: "done"}
_BG = (49, 41, 42, 44, 43, 45, 46, 47)  # ANSI background per colour code
RESET = "\x1b[0m"
CLEAR_HOME = "\x1b[H\x1b[2J"


def cell(node: Node, now_ms: int, faults: Faults | None = None, colour: bool = True) -> str:
    """One module, e.g. `u007 [  12] green 1Hz job t=4711 C`: lamp, display, colour, pattern, mode, token, keys."""
    col, pattern = node.light(now_ms)
    lit = node.led_on(now_ms)
    text = node.display_text(now_ms)
    lamp = f"[{text}]"
    if colour and lit and col:
        fg = 30 if col in (4, 6, 7) else 97
        lamp = f"\x1b[{_BG[col]};{fg}m{lamp}{RESET}"
    flags = ""
    status = node.status()
    if status & 1:
        flags += "C"
    if status & 2:
        flags += "S"
    if status & 4:
        flags += "a"
    if status & 0x8000:
        flags += "P"
    if status & 0x100:
        flags += "F"
    if faults is not None:
        if faults.gone:
            flags += " GONE"
        if faults.delay_s:
            flags += f" slow{faults.delay_s:g}s"
        if faults.corrupt:
            flags += " CRC!"
        if faults.exception:
            flags += f" exc{faults.exception}"
    desc = f"{COLOUR_NAMES[col]:<7} {PATTERN_NAMES[pattern] if col else '':<6} {MODE_NAMES.get(node.mode, '?'):<5}"
    token = f"t={node.token:<5}" if node.token else " " * 7
    return f"u{node.unit_id:03d} {lamp} {desc} {token} n={node.counter:<5} {flags}".rstrip()


def render(nodes: list[Node], now_ms: int, faults: dict[int, Faults] | None = None, *, colour: bool = True,
           title: str = "") -> str:
    lines = [title] if title else []
    for node in sorted(nodes, key=lambda n: n.unit_id):
        lines.append(cell(node, now_ms, (faults or {}).get(node.unit_id), colour))
    lines.append("keys: C confirm  S shortage  a adjusted  P power-up  F fault latched")
    return "\n".join(lines)
