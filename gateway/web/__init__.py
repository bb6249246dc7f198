"""The pages for pickers' PDAs, packing stations, supervisors and technicians, and the JSON API."""
