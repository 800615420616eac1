"""Simulators: synthetic query streams over real catalogs, click models, the environment loop."""
