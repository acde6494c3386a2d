"""`python -m dps_exp.run [overrides]`: see dps_exp/run/cli.py."""

from dps_exp.run.cli import entry

entry()
