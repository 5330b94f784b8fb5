"""Data sets, fixed designs and samplers (and the teacher–student / spike generators)."""

from .base import Dataset, FixedDesign, Sampler, subsample

__all__ = ["Dataset", "FixedDesign", "Sampler", "subsample"]
