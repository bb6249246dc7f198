"""Device drivers: bytes and registers only, no orders, no MQTT."""
