"""Floorgate PTL node reference firmware (SPEC §4): register logic, Modbus RTU slave, hardware stubs."""
