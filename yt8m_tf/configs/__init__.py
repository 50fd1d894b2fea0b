"""Experiment settings shipped with the library (zoo flagfiles)."""
