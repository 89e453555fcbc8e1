"""Test-wide setup: ``tests/`` on ``sys.path`` and a deterministic hypothesis profile.

``from strategies import ...`` and ``import benchmarks`` then work from any test module
whatever pytest's import mode or working directory. The ``exactcomp`` profile (loaded by
default) makes every hypothesis test reproducible (``derandomize``) and free of timing
assertions (``deadline=None``); a test's own ``@settings`` still overrides each field.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from hypothesis import HealthCheck, settings

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent)):  # strategies; benchmarks (repo root)
    if _path not in sys.path:
        sys.path.insert(0, _path)

# When a property fails, hypothesis imports its patch writer (libcst -> mypy_extensions),
# whose DeprecationWarning our ``filterwarnings = error`` turns into a pytest INTERNALERROR
# that hides the real failure. Import it once here, with that warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # an optional dependency (libcst) is missing: nothing to pre-load
        pass

settings.register_profile(
    "exactcomp",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("exactcomp")
