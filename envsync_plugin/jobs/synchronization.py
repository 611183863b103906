"""The synchronization job: thin; the service does the work."""

from __future__ import annotations


def run_synchronization(synchronization_id: int) -> str:
    from ..service.synchronizations import run_synchronization as run

    return run(synchronization_id)


def run_revert(synchronization_id: int, user: str | None) -> str:
    from ..service.synchronizations import run_revert as run

    return run(synchronization_id, user)
