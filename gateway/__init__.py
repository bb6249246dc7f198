"""Floorgate: the edge gateway for one zone of a warehouse floor."""

__version__ = "0.1.0"
