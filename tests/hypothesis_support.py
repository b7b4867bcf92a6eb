"""How many examples a property test runs under the loaded Hypothesis profile (tests/conftest.py).

A test's own `@settings(max_examples=...)` overrides the profile's, so each test states its count
for the "ci" profile through `examples(n)`, and the "fuzz" profile scales it.
"""

from __future__ import annotations

from hypothesis import settings


def examples(ci: int) -> int:
    """`ci` under the "ci" profile (what `make test` runs); as many times more as the loaded profile runs."""
    baseline = settings.get_profile("ci").max_examples
    return max(1, ci * settings().max_examples // baseline)
