"""Data generators that return the truth, paper settings, and data loaders.

Every ``make_*`` takes ``random_state`` (None | int | Generator) and returns the ground truth
alongside the data.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

from softmix._validation import check_int, check_random_state  # noqa: F401
