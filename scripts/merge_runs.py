"""`python scripts/merge_runs.py ARGS` is the console script `dps-merge ARGS` (dps_exp.analysis.merge_runs)."""

from dps_exp.analysis.merge_runs import main

if __name__ == "__main__":
    raise SystemExit(main())
