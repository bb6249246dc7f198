"""Simulators of the devices and peers around a Floorgate gateway."""
