"""dps-exp: a config-driven experiment framework for Diffusion Posterior Sampling."""

from pathlib import Path

__version__ = "0.1.0"

ASSETS = Path(__file__).resolve().parent / "assets"
"""Files shipped inside the package: the bundled photographs and the natural32 prior (see assets/SOURCES.md)."""
