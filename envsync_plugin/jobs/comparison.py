"""The comparison job: thin; the service does the work."""

from __future__ import annotations


def run_comparison(comparison_id: int) -> dict[str, int]:
    from ..service.comparisons import run_comparison as run

    return run(comparison_id)
