"""The use cases the views and the CLI call: nothing else reaches into RQ, the jobs or the engine."""

from __future__ import annotations

from .base import (
    ComparisonInfo,
    EnvironmentInfo,
    MessageInfo,
    Overview,
    SynchronizationInfo,
    as_utc,
    connection,
    enqueue,
    environments_info,
    format_datetime,
    init_db,
    list_messages,
    overview,
    queue,
    recent_comparisons,
    recent_synchronizations,
    run_worker,
    start_refusal,
    utcnow,
    workers,
)

__all__ = [
    "ComparisonInfo", "EnvironmentInfo", "MessageInfo", "Overview", "SynchronizationInfo", "as_utc", "connection",
    "enqueue", "environments_info", "format_datetime", "init_db", "list_messages", "overview", "queue",
    "recent_comparisons", "recent_synchronizations", "run_worker", "start_refusal", "utcnow", "workers",
]
