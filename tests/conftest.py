"""Test-wide setup: ``tests/`` on ``sys.path`` and a deterministic hypothesis profile.

``from strategies import ...`` then works from any test module whatever pytest's import
mode. The ``exactcomp`` profile (loaded by default) makes every hypothesis test
reproducible (``derandomize``) and free of timing assertions (``deadline=None``); a test's
own ``@settings`` still overrides each field it names.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

settings.register_profile(
    "exactcomp",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("exactcomp")
