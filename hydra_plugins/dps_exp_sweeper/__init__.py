"""Hydra plugins of dps-exp: the vectorized sweeper (`hydra/sweeper=vectorized`, the project's default) and the
Optuna study (`hparams_search=...`)."""
