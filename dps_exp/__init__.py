"""dps-exp: a config-driven experiment framework for Diffusion Posterior Sampling."""

__version__ = "0.1.0"
