"""simaccel: the bundled simulated accelerator target."""

from reference_backends.simaccel.limits import LIMITS, SimAccelLimits
from reference_backends.simaccel.target import target

__all__ = ["LIMITS", "SimAccelLimits", "target"]
