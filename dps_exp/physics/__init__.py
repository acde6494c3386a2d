"""Forward models y = noise(A(x)); one file per operator, one YAML in conf/physics/ per option."""

from dps_exp.physics.base import LinearPhysics, Physics
from dps_exp.physics.inpaint import RandomInpainting
from dps_exp.physics.noise import Noise

__all__ = ["LinearPhysics", "Noise", "Physics", "RandomInpainting"]
