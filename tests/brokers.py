"""Private Mosquitto brokers for tests (the class lives in simulators/broker.py: the demo uses it too)."""

from simulators.broker import MOSQUITTO, Broker, free_port

__all__ = ["MOSQUITTO", "Broker", "free_port"]
