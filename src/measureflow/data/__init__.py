"""Data sets, fixed designs and samplers (and the teacher–student / spike generators)."""

from .base import Dataset, FixedDesign, Sampler, subsample
from .spikes import SpikeSignal
from .teacher_student import TeacherStudent

__all__ = ["Dataset", "FixedDesign", "Sampler", "subsample", "TeacherStudent", "SpikeSignal"]
