"""pytest configuration: hypothesis profile and the shared strategies.

The strategies and assertion helpers live in `strategies.py` (importable from
the test modules whatever pytest's import mode is); they are re-exported here.
"""

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strategies import (  # noqa: E402,F401
    COSINE_KINDS,
    FLOAT_DTYPES,
    LABEL_DTYPES,
    LABEL_KINDS,
    POINT_KINDS,
    Case,
    cases,
    metric_cases,
)

settings.register_profile(
    "tripletcore",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# on CI (CI set in the environment) the examples are derandomised, so a run is reproducible
settings.register_profile(
    "tripletcore-ci", parent=settings.get_profile("tripletcore"), derandomize=True
)
settings.load_profile(
    os.environ.get(
        "HYPOTHESIS_PROFILE", "tripletcore-ci" if os.environ.get("CI") else "tripletcore"
    )
)
