"""The A/B floor simulation: the production dispatch engine against static round-robin routing on one
simulated peak (`floorgate sim ab`)."""

from simulators.ab.cli import add_parser, run_ab, summary, table, verdicts
from simulators.ab.scenario import DEFAULT_LOAD, Scenario, build
from simulators.ab.sim import Floor, RunResult

__all__ = ["DEFAULT_LOAD", "Floor", "RunResult", "Scenario", "add_parser", "build", "run_ab", "summary", "table",
           "verdicts"]
