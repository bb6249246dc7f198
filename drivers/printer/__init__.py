"""Network label printers on the raw TCP port (9100)."""

from drivers.printer.raw_tcp import (
    PrinterError,
    PrinterRefused,
    PrinterTimeout,
    PrinterUnreachable,
    RawTcpPrinter,
    print_raw,
)

__all__ = ["PrinterError", "PrinterRefused", "PrinterTimeout", "PrinterUnreachable", "RawTcpPrinter", "print_raw"]
