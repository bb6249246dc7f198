"""Barcode scanner drivers: serial and HID readers that turn bytes or key strokes into `RawScan`s.

They know nothing of orders or GS1; `gateway.domain.barcode` interprets what they deliver.
"""

from drivers.scanner.factory import ScannerSettings, make_reader
from drivers.scanner.framing import TERMINATORS, LineFramer
from drivers.scanner.hid_reader import HidScanner
from drivers.scanner.keymaps import LAYOUTS, Layout, get_layout
from drivers.scanner.keys import EVENT, KeyDecoder, key_records
from drivers.scanner.reader import Backoff, ReconnectingReader, ScanCallback, StatusCallback
from drivers.scanner.scan import GS, MAX_SCAN_CHARS, RawScan, split_aim
from drivers.scanner.serial_reader import SerialScanner

__all__ = [
    "EVENT", "GS", "LAYOUTS", "MAX_SCAN_CHARS", "TERMINATORS", "Backoff", "HidScanner", "KeyDecoder", "Layout",
    "LineFramer", "RawScan", "ReconnectingReader", "ScanCallback", "ScannerSettings", "SerialScanner",
    "StatusCallback", "get_layout", "key_records", "make_reader", "split_aim",
]
