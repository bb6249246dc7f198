"""Outbound alarm notifications: a JSON webhook and e-mail, each delivery journalled with its own state."""

from gateway.alarms.channel import Notice, PermanentError, RetryPolicy, TransientError
from gateway.alarms.deliveries import KIND, Delivery
from gateway.alarms.notifier import AlarmNotifier

__all__ = ["KIND", "AlarmNotifier", "Delivery", "Notice", "PermanentError", "RetryPolicy", "TransientError"]
