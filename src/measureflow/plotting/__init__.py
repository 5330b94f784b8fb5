"""Matplotlib figures (Agg backend; import costs nothing until a function is called).

- :mod:`~measureflow.plotting.figures`: ``new_figure``, ``save_figure`` (PNG + PDF,
  byte-reproducible).
- :mod:`~measureflow.plotting.particle_paths`: ``planar_paths`` (network units in the
  plane), ``ray_mass_panel`` (the mass on each teacher ray), ``spike_paths`` (spikes in
  the (position, amplitude) plane).
- :mod:`~measureflow.plotting.level_lines`: ``level_lines`` (a function on a 2-D slice,
  e.g. F'(μ0)).
- :mod:`~measureflow.plotting.rates`: ``rate_plot``, ``fit_power_law`` (log-log against m).
- :mod:`~measureflow.plotting.animation`: ``planar_animation``, ``spike_animation`` (GIFs
  of the particles moving, from their snapshots).
"""

from .animation import planar_animation, spike_animation
from .figures import new_figure, save_figure, use_agg
from .level_lines import level_lines
from .particle_paths import planar_paths, spike_paths
from .rates import fit_power_law, rate_plot

__all__ = ["new_figure", "save_figure", "use_agg", "planar_paths", "spike_paths", "level_lines", "rate_plot",
           "fit_power_law", "planar_animation", "spike_animation"]
