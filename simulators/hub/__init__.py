"""The hub simulator: stands in for the central system on the other side of MQTT."""

from simulators.hub.hub import HubSim

__all__ = ["HubSim"]
