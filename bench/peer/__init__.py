"""The peer comparison: Floorgate and ThingsBoard IoT Gateway on the same Modbus-poll-to-MQTT workload."""
