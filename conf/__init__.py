"""The Hydra config tree, shipped inside the package as `dps_exp.conf` (Hydra: `pkg://dps_exp.conf`)."""
