"""Pure rules on plain values. Nothing in this package performs I/O or imports an I/O library."""
