"""Diffusion priors: one file per network or closed-form prior, one YAML in conf/denoiser/ per option."""

from dps_exp.denoisers.base import Denoiser, Prediction
from dps_exp.denoisers.gaussian import StationaryGaussian

__all__ = ["Denoiser", "Prediction", "StationaryGaussian"]
