"""Simulated barcode scanners: serial on a pty, HID through uinput or a pipe of input_event records."""

from simulators.scanner.encode import barcode_text, frame, hri_to_element_string, unescape
from simulators.scanner.hid_sim import (
    VirtualHidFifo,
    VirtualUinputScanner,
    key_bytes,
    key_events,
    uinput_available,
)
from simulators.scanner.serial_sim import VirtualSerialScanner

__all__ = [
    "VirtualHidFifo", "VirtualSerialScanner", "VirtualUinputScanner", "barcode_text", "frame",
    "hri_to_element_string", "key_bytes", "key_events", "uinput_available", "unescape",
]
