"""Reference firmware for devices Floorgate talks to."""
