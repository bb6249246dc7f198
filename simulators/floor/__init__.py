"""A simulated floor: pickers and packers who make mistakes, working through the real gateway code, with
a model of what is physically in each tote kept apart from the gateway's state."""
