"""The comparison jobs: thin; the service does the work."""

from __future__ import annotations


def run_comparison(comparison_id: int) -> dict[str, int] | None:
    from ..service.comparisons import run_comparison as run

    return run(comparison_id)


def run_comparison_part(part_id: int) -> int:
    from ..service.comparisons import run_comparison_part as run

    return run(part_id)


def finish_comparison(comparison_id: int) -> dict[str, int] | None:
    from ..service.comparisons import finish_comparison as finish

    return finish(comparison_id)
