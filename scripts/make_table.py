"""`python scripts/make_table.py ARGS` is the console script `dps-table ARGS` (dps_exp.analysis.make_table)."""

from dps_exp.analysis.make_table import main

if __name__ == "__main__":
    raise SystemExit(main())
