"""Retention policy: the YAML model and the pure planner."""
