"""Stacking stage: the second-level model over L1 predictions and the soft labels it produces."""
