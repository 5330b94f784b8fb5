"""Features φ(θ, x) and their homogeneity metadata."""

from .base import NO_HOMOGENEITY, Custom, Feature, Homogeneity
from .networks import Erf, ReLU, Sigmoid, Unit
from .spikes import Spikes

__all__ = ["Feature", "Custom", "Homogeneity", "NO_HOMOGENEITY", "ReLU", "Sigmoid", "Erf", "Unit", "Spikes"]
