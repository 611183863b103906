"""A job that proves a worker runs jobs with this app's configuration (used by the status panel)."""

from __future__ import annotations

import os

from ..extension import current_envsync


def ping(token: str) -> dict[str, object]:
    return {
        "token": token,
        "environment": current_envsync.settings.current_environment,
        "worker_pid": os.getpid(),
    }
