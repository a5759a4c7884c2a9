"""Comparing fitted and true parameters: component matching (Hungarian), parameter errors,
Wasserstein-1 between mixing measures, Voronoi losses."""

from __future__ import annotations

import numpy as np  # noqa: F401
from scipy import optimize  # noqa: F401
