"""Forward models y = noise(A(x)); one file per operator family, one YAML in conf/physics/ per option."""

from dps_exp.physics.base import LinearPhysics, Physics
from dps_exp.physics.blur import GaussianBlur, MotionBlur
from dps_exp.physics.denoise import Denoising
from dps_exp.physics.inpaint import BoxInpainting, RandomInpainting
from dps_exp.physics.noise import Noise
from dps_exp.physics.phase import PhaseRetrieval
from dps_exp.physics.super_resolution import SuperResolution

__all__ = [
    "BoxInpainting",
    "Denoising",
    "GaussianBlur",
    "LinearPhysics",
    "MotionBlur",
    "Noise",
    "PhaseRetrieval",
    "Physics",
    "RandomInpainting",
    "SuperResolution",
]
