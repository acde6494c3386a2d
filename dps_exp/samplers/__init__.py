"""Samplers: one file per algorithm, one YAML in conf/sampler/ per option."""

from dps_exp.samplers.dps import DPS, SampleResult, guidance

__all__ = ["DPS", "SampleResult", "guidance"]
