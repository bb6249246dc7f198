"""MQTT sync with the hub: publishing the outbox, taking commands, results, snapshots, telemetry."""
