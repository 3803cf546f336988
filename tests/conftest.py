"""
Test configuration: the hypothesis profiles.

``dev`` (the default) explores with fresh random examples and remembers
failures in ``.hypothesis/``; ``ci`` (chosen when the ``CI`` environment
variable is set, as CI services do) is derandomized, so a run is repeatable
and a red build is never a dice roll.  ``HYPOTHESIS_PROFILE`` overrides both.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
