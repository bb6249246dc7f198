"""A simulated raw TCP (port 9100) label printer that keeps and parses every job."""

from simulators.printer.sim import PrinterSimulator, PrintJob
from simulators.printer.zpl import ZplField, ZplLabel, parse_zpl

__all__ = ["PrintJob", "PrinterSimulator", "ZplField", "ZplLabel", "parse_zpl"]
