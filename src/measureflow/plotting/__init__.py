"""Matplotlib figures (Agg backend; import costs nothing until a function is called).

- :mod:`~measureflow.plotting.figures`: ``new_figure``, ``save_figure`` (PNG + PDF,
  byte-reproducible).
- :mod:`~measureflow.plotting.particle_paths`: ``planar_paths`` (network units in the
  (w, b) plane), ``spike_paths`` (spikes in the (position, weight) plane).
"""

from .figures import new_figure, save_figure, use_agg
from .particle_paths import planar_paths, spike_paths

__all__ = ["new_figure", "save_figure", "use_agg", "planar_paths", "spike_paths"]
