"""Hydra plugin of dps-exp: the vectorized sweeper (`hydra/sweeper=vectorized`, the project's default)."""
