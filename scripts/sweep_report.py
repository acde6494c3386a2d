"""`python scripts/sweep_report.py ARGS` is the console script `dps-sweep-report ARGS` (dps_exp.analysis.sweep_report)."""

from dps_exp.analysis.sweep_report import main

if __name__ == "__main__":
    raise SystemExit(main())
