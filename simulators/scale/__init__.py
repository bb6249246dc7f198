"""A simulated serial scale on a pseudo-terminal."""

from simulators.scale.sim import ScaleSimulator

__all__ = ["ScaleSimulator"]
