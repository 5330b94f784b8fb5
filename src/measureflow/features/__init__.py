"""Features φ(θ, x) and their homogeneity metadata."""

from .base import NO_HOMOGENEITY, Custom, Feature, Homogeneity

__all__ = ["Feature", "Custom", "Homogeneity", "NO_HOMOGENEITY"]
