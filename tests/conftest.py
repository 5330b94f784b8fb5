import os

os.environ.setdefault("MPLBACKEND", "Agg")

import measureflow  # noqa: E402,F401  (enables float64 before any test builds arrays)
