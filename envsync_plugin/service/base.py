"""What every use case shares: the clock, the instance database, the queue, and the records pages show."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable

import sqlalchemy as sa
from rq import Worker
from rq.job import Job

from ..engine.types import Direction, Mode
from ..extension import current_envsync
from ..models import ComparisonStatus, SynchronizationStatus
from ..modules import SyncModule
from ..queue import PromptWorker, make_queue

log = logging.getLogger("envsync")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Datetimes read back from SQLite come without a zone; envsync stores UTC only."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def connection() -> sa.Connection:
    """A connection to the instance's own database (where envsync's tables live)."""
    return current_envsync.db.engine.connect()


def init_db() -> list[str]:
    """Create envsync's tables in the instance's database (hosts without migrations)."""
    tables = current_envsync.tables.all
    engine = current_envsync.db.engine
    current_envsync.db.metadata.create_all(engine, tables=tables)
    return [table.name for table in tables]


# --- the queue ----------------------------------------------------------------------------------

def queue():
    return make_queue(current_envsync.redis, current_envsync.settings.queue_name)


def job_id(*parts: object) -> str:
    """An RQ job id (or Redis key) of this instance: prefixed with its queue's name, so that apps that
    share a Redis server under different ENVSYNC_QUEUE_NAMEs never take each other's jobs for their own
    (every app's first synchronization has the id 1)."""
    return "-".join([current_envsync.settings.queue_name, *map(str, parts)])


def enqueue(func: Callable[..., Any], *args: Any, job_id: str | None = None, at: dt.datetime | None = None) -> Job:
    """Queue ``func(*args)`` for a worker, now or at ``at`` (UTC)."""
    q = queue()
    if at is not None:
        return q.enqueue_at(at, func, *args, job_id=job_id)
    return q.enqueue(func, *args, job_id=job_id)


def workers() -> list[Worker]:
    """The workers listening to envsync's queue right now."""
    return Worker.all(queue=queue())


def run_worker(*, burst: bool = False) -> None:
    """Run an RQ worker with the scheduler on envsync's queue, every job inside this app's context."""
    from flask import current_app

    from ..jobs import app_job_class

    app = current_app._get_current_object()
    for hook in current_envsync.extension.worker_start_hooks:
        hook()
    job_class = app_job_class(app)
    q = make_queue(current_envsync.redis, current_envsync.settings.queue_name, job_class)
    worker = PromptWorker([q], connection=current_envsync.redis, job_class=job_class)
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


# --- what the pages show ------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvironmentInfo:
    name: str
    database: str  # the URL without its password
    media_root: str
    is_current: bool


@dataclass(frozen=True)
class ComparisonInfo:
    id: int
    direction: Direction
    mode: Mode
    modules: list[str]
    gallery_folders: list[str] | None
    status: ComparisonStatus
    progress_done: int
    progress_total: int
    progress_detail: dict[str, list[int]]
    counts: dict[str, int]
    error: str | None
    requested_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    base_url: str | None = None

    @classmethod
    def from_row(cls, row: sa.Row) -> ComparisonInfo:
        return cls(
            id=row.id, direction=Direction(row.direction), mode=Mode(row.mode), modules=list(row.modules or []),
            gallery_folders=row.gallery_folders, status=ComparisonStatus(row.status),
            progress_done=row.progress_done or 0, progress_total=row.progress_total or 0,
            progress_detail=dict(row.progress_detail or {}), counts=dict(row.counts or {}), error=row.error,
            requested_by=row.requested_by, created_at=as_utc(row.created_at), started_at=as_utc(row.started_at),
            finished_at=as_utc(row.finished_at), base_url=row.base_url,
        )

    @property
    def percent(self) -> int:
        return int(100 * self.progress_done / self.progress_total) if self.progress_total else 0


@dataclass(frozen=True)
class SynchronizationInfo:
    id: int
    comparison_id: int
    status: SynchronizationStatus
    test_import: bool
    scheduled_at: dt.datetime
    requested_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    canceled_by: str | None
    canceled_at: dt.datetime | None
    summary: dict[str, Any]
    error: str | None
    error_detail: str | None
    mail_error: str | None
    reverted_by: str | None = None
    reverted_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: sa.Row) -> SynchronizationInfo:
        return cls(
            id=row.id, comparison_id=row.comparison_id, status=SynchronizationStatus(row.status),
            test_import=bool(row.test_import), scheduled_at=as_utc(row.scheduled_at), requested_by=row.requested_by,
            created_at=as_utc(row.created_at), started_at=as_utc(row.started_at), finished_at=as_utc(row.finished_at),
            canceled_by=row.canceled_by, canceled_at=as_utc(row.canceled_at), summary=dict(row.summary or {}),
            error=row.error, error_detail=row.error_detail, mail_error=row.mail_error,
            reverted_by=row.reverted_by, reverted_at=as_utc(row.reverted_at),
        )


@dataclass(frozen=True)
class MessageInfo:
    id: int
    title: str
    level: str
    body: str
    synchronization_id: int | None
    comparison_id: int | None
    recipient: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: sa.Row) -> MessageInfo:
        return cls(id=row.id, title=row.title, level=row.level, body=row.body,
                   synchronization_id=row.synchronization_id, comparison_id=row.comparison_id,
                   recipient=row.recipient, created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))


@dataclass(frozen=True)
class Overview:
    current_environment: str
    can_start: bool
    cannot_start_reason: str | None
    environments: list[EnvironmentInfo]
    never_synchronized: list[str]
    modules: list[SyncModule]
    comparisons: list[ComparisonInfo]
    synchronizations: list[SynchronizationInfo]
    redis: str
    workers: int


def start_refusal() -> str | None:
    """Why this instance may not start a synchronization (None: it may)."""
    if current_envsync.settings.current_environment != "PROD":
        return ("Synchronization can be started only from the PROD environment. This is the TEST back office: "
                "open System > Synchronization on PROD to synchronize in either direction.")
    return None


def environments_info() -> list[EnvironmentInfo]:
    settings = current_envsync.settings
    return [
        EnvironmentInfo(name, sa.make_url(env.database_url).render_as_string(hide_password=True),
                        str(env.media_root), name == settings.current_environment)
        for name, env in settings.environments.items()
    ]


def recent_comparisons(limit: int = 10) -> list[ComparisonInfo]:
    t = current_envsync.tables.comparisons
    with connection() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).all()
    return [ComparisonInfo.from_row(row) for row in rows]


def recent_synchronizations(limit: int = 10) -> list[SynchronizationInfo]:
    t = current_envsync.tables.synchronizations
    with connection() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).all()
    return [SynchronizationInfo.from_row(row) for row in rows]


def list_messages(limit: int = 100) -> list[MessageInfo]:
    """The Messages list, newest first."""
    t = current_envsync.tables.messages
    with connection() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.updated_at.desc(), t.c.id.desc()).limit(limit)).all()
    return [MessageInfo.from_row(row) for row in rows]


def redis_description() -> str:
    url = current_envsync.settings.redis_url
    return sa.make_url(url).render_as_string(hide_password=True) if url and "@" in url else (url or "embedded Redis")


def overview() -> Overview:
    try:
        worker_count = len(workers())
    except Exception as exc:  # noqa: BLE001 - the page must render even when Redis is down
        log.warning("Could not reach Redis: %s", exc)
        worker_count = -1
    reason = start_refusal()
    return Overview(
        current_environment=current_envsync.settings.current_environment,
        can_start=reason is None,
        cannot_start_reason=reason,
        environments=environments_info(),
        never_synchronized=current_envsync.extension.never_synchronized,
        modules=list(current_envsync.modules),
        comparisons=recent_comparisons(),
        synchronizations=recent_synchronizations(),
        redis=redis_description(),
        workers=worker_count,
    )


def format_datetime(value: dt.datetime | None) -> str:
    """A UTC datetime as the user reads it: in ENVSYNC_TIMEZONE, with the zone's name."""
    if value is None:
        return ""
    local = as_utc(value).astimezone(current_envsync.settings.timezone)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "")


__all__ = [
    "ComparisonInfo", "EnvironmentInfo", "MessageInfo", "Overview", "SynchronizationInfo", "as_utc", "connection",
    "enqueue", "environments_info", "format_datetime", "init_db", "job_id", "list_messages", "overview", "queue",
    "recent_comparisons", "recent_synchronizations", "run_worker", "start_refusal", "utcnow", "workers",
]
