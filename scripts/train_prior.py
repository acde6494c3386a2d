"""`python scripts/train_prior.py ARGS` is the console script `dps-train-prior ARGS` (dps_exp.train.cli)."""

from dps_exp.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
