"""Synchronizations: schedule the checked changes, run them all-or-nothing in a worker, cancel, revert,
and recover what a lost Redis or a killed worker left behind. The database is the truth, Redis the transport."""

from __future__ import annotations

import datetime as dt
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from ..engine.types import Direction
from ..errors import EnvSyncError, InvalidInput, NotAllowed, NotFound
from ..extension import current_envsync
from ..models import ComparisonStatus, SynchronizationStatus, Tab
from .base import (
    SynchronizationInfo,
    as_utc,
    connection,
    enqueue,
    format_datetime,
    job_id,
    queue,
    start_refusal,
    utcnow,
)
from .comparisons import get_comparison, selected_summary, source_side, target_side
from .messages import set_synchronization_message

#: A time this far in the past still counts as "now" (the form was filled in a minute ago).
PAST_TOLERANCE = dt.timedelta(minutes=2)
#: How often a running synchronization looks for a cancel request and beats its heart (seconds).
CHECK_INTERVAL = 0.5
ACTIVE = (SynchronizationStatus.SCHEDULED.value, SynchronizationStatus.RUNNING.value)

TITLE_PROCESS = "Synchronization process"
TITLE_SUCCESS = "Success: Synchronization process"
TITLE_FAILURE = "FAILURE: Synchronization process"
TITLE_CANCELED = "Canceled: Synchronization process"


def parse_when(value: str | dt.datetime | None) -> dt.datetime:
    """A schedule time in UTC: None is now; a time without a zone is in ENVSYNC_TIMEZONE."""
    if value is None or value == "":
        return utcnow()
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(f"{value!r} is not a date and time; use e.g. 2026-12-24T18:00.") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=current_envsync.settings.timezone)
    return value.astimezone(dt.UTC)


def get_synchronization(synchronization_id: int) -> SynchronizationInfo:
    t = current_envsync.tables.synchronizations
    with connection() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == synchronization_id)).first()
    if row is None:
        raise NotFound(f"There is no synchronization #{synchronization_id}.")
    return SynchronizationInfo.from_row(row)


def active_synchronization() -> SynchronizationInfo | None:
    t = current_envsync.tables.synchronizations
    with connection() as conn:
        row = conn.execute(sa.select(t).where(t.c.status.in_(ACTIVE)).order_by(t.c.id)).first()
    return SynchronizationInfo.from_row(row) if row else None


def _job_id(synchronization_id: int) -> str:
    return job_id("synchronization", synchronization_id)


def schedule_synchronization(comparison_id: int, *, at: str | dt.datetime | None = None, test_import: bool = False,
                             user: str | None) -> SynchronizationInfo:
    """Schedule the apply of a ready comparison's checked changes; refused with a reason otherwise."""
    refusal = start_refusal()
    if refusal:
        raise NotAllowed(refusal)
    comparison = get_comparison(comparison_id)
    if comparison.status is not ComparisonStatus.READY:
        raise NotAllowed(f"Comparison #{comparison_id} is {comparison.status.value}, not ready: "
                         "a synchronization can be scheduled only from a ready comparison.")
    when = parse_when(at)
    now = utcnow()
    if when < now - PAST_TOLERANCE:
        raise InvalidInput(f"{format_datetime(when)} is in the past; choose a time from now on.")
    when = max(when, now)
    if not selected_summary(comparison_id):
        raise InvalidInput(f"No change of comparison #{comparison_id} is checked: check the records to synchronize.")
    t = current_envsync.tables.synchronizations
    with current_envsync.redis.lock("envsync:schedule", timeout=30, blocking_timeout=30):
        first = active_synchronization()
        if first is not None:
            raise NotAllowed(
                f"Synchronization #{first.id} is already {first.status.value} (for "
                f"{format_datetime(first.scheduled_at)}, by {first.requested_by or 'unknown'}); only one "
                "synchronization may be scheduled or running at a time. Wait for it or cancel it."
            )
        with connection() as conn:
            synchronization_id = conn.execute(t.insert().values(
                comparison_id=comparison_id, status=SynchronizationStatus.SCHEDULED.value, test_import=test_import,
                scheduled_at=when, requested_by=user, created_at=now)).inserted_primary_key[0]
            conn.execute(t.update().where(t.c.id == synchronization_id).values(job_id=_job_id(synchronization_id)))
            conn.commit()
    info = get_synchronization(synchronization_id)
    _process_message(info)
    try:
        _enqueue(info)
    except Exception as exc:
        _finish(info, SynchronizationStatus.FAILURE, error=f"It could not be queued: {exc}")
        raise NotAllowed(f"The synchronization could not be queued (is Redis running?): {exc}") from exc
    return info


def _enqueue(info: SynchronizationInfo) -> None:
    from ..jobs.synchronization import run_synchronization

    at = info.scheduled_at if info.scheduled_at > utcnow() else None
    enqueue(run_synchronization, info.id, job_id=_job_id(info.id), at=at)


def cancel_synchronization(synchronization_id: int, *, user: str | None) -> SynchronizationInfo:
    """Cancel a scheduled synchronization now, or ask a running one to stop and roll back at its next checkpoint."""
    info = get_synchronization(synchronization_id)
    if info.status.finished:
        raise NotAllowed(f"Synchronization #{synchronization_id} has already ended ({info.status.value}); "
                         "there is nothing to cancel.")
    t = current_envsync.tables.synchronizations
    now = utcnow()
    with connection() as conn:
        if info.status is SynchronizationStatus.SCHEDULED:
            claimed = conn.execute(t.update().where(t.c.id == info.id, t.c.status == info.status.value).values(
                status=SynchronizationStatus.CANCELED.value, canceled_by=user, canceled_at=now, finished_at=now))
            if claimed.rowcount == 0:  # it started meanwhile: cancel it as a running one
                conn.rollback()
                return cancel_synchronization(synchronization_id, user=user)
            _message(info, TITLE_CANCELED, "info",
                     f"Synchronization #{info.id} scheduled for {format_datetime(info.scheduled_at)} was canceled by "
                     f"{user or 'unknown'} on {format_datetime(now)}. Nothing was applied.", conn=conn)
            conn.commit()
    if info.status is SynchronizationStatus.RUNNING:
        # The running job looks for this at its next checkpoint, then rolls back and records who.
        current_envsync.redis.set(_cancel_key(info.id), user or "", ex=7 * 24 * 3600)
    if info.status is SynchronizationStatus.SCHEDULED:
        _remove_job(info.id)
    return get_synchronization(synchronization_id)


def _remove_job(synchronization_id: int) -> None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        job = Job.fetch(_job_id(synchronization_id), connection=current_envsync.redis)
    except NoSuchJobError:
        return
    job.cancel()
    job.delete()


# --- the worker's side ----------------------------------------------------------------------------

def _cancel_key(synchronization_id: int) -> str:
    return job_id("cancel", synchronization_id)


class _Checkpoint:
    """Answers "was a cancel asked for?", at most every CHECK_INTERVAL.

    The request travels through Redis, not the database: on SQLite the apply holds the write lock of
    the target database, which may be the very database envsync's tables live in."""

    def __init__(self, synchronization_id: int) -> None:
        self.key = _cancel_key(synchronization_id)
        self.last = 0.0
        self.canceled_by: str | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.canceled_by is None and now - self.last >= CHECK_INTERVAL:
            self.last = now
            value = current_envsync.redis.get(self.key)
            if value is not None:
                self.canceled_by = value.decode() or "unknown"
        return self.canceled_by is not None


def backup_root() -> Path:
    """Where the backups for revert live: the instance folder, outside both media roots."""
    return Path(current_app.instance_path) / "envsync-backups"


def backup_folder(synchronization_id: int) -> Path:
    return backup_root() / str(synchronization_id)


def run_synchronization(synchronization_id: int) -> str:
    """Apply a scheduled synchronization (the worker's side). Safe to run twice: only a scheduled one runs."""
    from ..engine import apply as engine

    t = current_envsync.tables.synchronizations
    with connection() as conn:
        claimed = conn.execute(t.update().where(
            t.c.id == synchronization_id, t.c.status == SynchronizationStatus.SCHEDULED.value
        ).values(status=SynchronizationStatus.RUNNING.value, started_at=utcnow()))
        conn.commit()
    info = get_synchronization(synchronization_id)
    if claimed.rowcount == 0:
        return info.status.value
    _process_message(info)
    comparison = get_comparison(info.comparison_id)
    direction = comparison.direction
    summary = {"modules": selected_summary(comparison.id), "direction": direction.value}
    try:
        items = _items(comparison.id)
        modules = [current_envsync.modules[key] for key in comparison.modules]
        checkpoint = _Checkpoint(info.id)
        result = engine.apply(
            source_side(direction), target_side(direction), modules, items,
            test_import=info.test_import, should_cancel=checkpoint,
            backup_dir=None if info.test_import else backup_folder(info.id),
        )
    except engine.Canceled:
        by = checkpoint.canceled_by
        info = _finish(info, SynchronizationStatus.CANCELED, (
            TITLE_CANCELED, "info", f"Synchronization #{info.id} was canceled by {by or 'unknown'} while it ran; "
                                    "everything it had done was rolled back: the target is exactly as it was."),
            summary=summary, canceled_by=by, canceled_at=utcnow())
        current_envsync.redis.delete(_cancel_key(info.id))
        return info.status.value
    except EnvSyncError as exc:
        return _failed(info, str(exc), getattr(exc, "detail", None), summary)
    except Exception as exc:  # noqa: BLE001 - any failure ends as FAILURE with its detail
        return _failed(info, f"An unexpected error stopped it: {exc}", traceback.format_exc(), summary)
    if not info.test_import:
        _record_baseline(result)
    summary["records"] = [record._asdict() for record in result.records[:1000]]
    summary["counts"] = result.counts
    _succeeded(info, direction, summary)
    return SynchronizationStatus.SUCCESS.value


def _items(comparison_id: int) -> list:
    from ..engine.apply import ApplyItem

    c = current_envsync.tables.changes
    with connection() as conn:
        rows = conn.execute(sa.select(c).where(c.c.comparison_id == comparison_id, c.c.selected.is_(True))
                            .order_by(c.c.id)).all()
    return [ApplyItem(module=row.module, table_name=row.table_name, key=row.key, action=row.action,
                      source_fingerprint=row.source_fingerprint, target_fingerprint=row.target_fingerprint,
                      label=row.label) for row in rows]


def _record_baseline(result) -> None:  # noqa: ANN001
    from ..engine.compare import record_baseline

    with connection() as conn:
        record_baseline(conn, current_envsync.tables.baseline, result.baseline)
        conn.commit()


#: A synchronization's message: (title, level, body).
Message = tuple[str, str, str]


def _finish(info: SynchronizationInfo, status: SynchronizationStatus, message: Message | None = None,
            **values: object) -> SynchronizationInfo:
    """End ``info`` as ``status``; its message, when given, in the same transaction: nobody reads the
    outcome without it."""
    t = current_envsync.tables.synchronizations
    with connection() as conn:
        conn.execute(t.update().where(t.c.id == info.id).values(status=status.value, finished_at=utcnow(), **values))
        if message is not None:
            _message(info, *message, conn=conn)
        conn.commit()
    return get_synchronization(info.id)


def _failed(info: SynchronizationInfo, reason: str, detail: str | None, summary: dict) -> str:
    kind = " (test import)" if info.test_import else ""
    info = _finish(info, SynchronizationStatus.FAILURE, (
        TITLE_FAILURE, "failure", f"Synchronization #{info.id}{kind} failed: {reason} Nothing was applied: the "
                                  "target environment is exactly as it was before."),
        error=reason, error_detail=detail, summary=summary)
    _mail(info, "synchronization_failure", f"{TITLE_FAILURE}{kind}")
    return info.status.value


def _succeeded(info: SynchronizationInfo, direction: Direction, summary: dict) -> None:
    """End ``info`` as Success, with its message and e-mail (what was applied, per module and tab)."""
    lines = [f"{_module_label(module)}: " + ", ".join(f"{Tab(tab).title.lower()} {count}"
                                                   for tab, count in tabs.items())
             for module, tabs in summary.get("modules", {}).items()]
    if info.test_import:
        body = (f"Test import of synchronization #{info.id} ({direction.arrow}) completed: every change was "
                "executed and checked, then rolled back; nothing was saved. It would apply: " + "; ".join(lines))
        title = f"{TITLE_SUCCESS} (test import)"
    else:
        body = (f"Synchronization #{info.id} ({direction.arrow}) was completed successfully and the planned changes "
                "have been applied: " + "; ".join(lines))
        title = TITLE_SUCCESS
    info = _finish(info, SynchronizationStatus.SUCCESS, (title, "success", body), summary=summary)
    _mail(info, "synchronization_success", title)


def _module_label(key: str) -> str:
    return current_envsync.modules[key].label if key in current_envsync.modules else key


def _process_message(info: SynchronizationInfo) -> None:
    kind = " (test import)" if info.test_import else ""
    if info.status is SynchronizationStatus.RUNNING:
        body = f"Synchronization #{info.id}{kind} is running since {format_datetime(info.started_at)}."
    else:
        body = (f"Synchronization #{info.id}{kind} is scheduled for {format_datetime(info.scheduled_at)} by "
                f"{info.requested_by or 'unknown'}.")
    _message(info, TITLE_PROCESS, "info", body)


def _message(info: SynchronizationInfo, title: str, level: str, body: str, conn: sa.Connection | None = None) -> None:
    set_synchronization_message(info.id, title=title, level=level, body=body, recipient=info.requested_by, conn=conn)


def _mail(info: SynchronizationInfo, template: str, subject: str) -> None:
    from ..mail import send

    comparison = get_comparison(info.comparison_id)
    summary_rows = [(_module_label(module), [(Tab(tab).title, count) for tab, count in tabs.items()])
                    for module, tabs in info.summary.get("modules", {}).items()]
    link = f"{comparison.base_url or ''}/admin/synchronization/messages/"
    error = send(template, info.requested_by, subject, synchronization=info, direction=comparison.direction,
                 summary_rows=summary_rows, link=link)
    if error:
        t = current_envsync.tables.synchronizations
        with connection() as conn:
            conn.execute(t.update().where(t.c.id == info.id).values(mail_error=error))
            conn.commit()
        m = current_envsync.tables.messages
        with connection() as conn:
            conn.execute(m.update().where(m.c.synchronization_id == info.id).values(
                body=m.c.body + f" (Note: {error})"))
            conn.commit()


# --- recovery on worker start --------------------------------------------------------------------

@dataclass(frozen=True)
class Recovery:
    requeued: list[int]
    failed: list[int]
    files_finished: int


def recover() -> Recovery:
    """Make Redis agree with the database: re-queue scheduled synchronizations whose job was lost, end
    as FAILURE the running ones whose worker died, and finish file moves interrupted after a commit."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    from ..engine.apply import finish_pending_file_moves, running_applies

    environments = [current_envsync.environments[name] for name in current_envsync.environments.names]
    recoveries = [recovery for env in environments for recovery in finish_pending_file_moves(env)]
    applying = {sync_id for env in environments for sync_id in running_applies(env)}
    committed = {recovery.sync_id for recovery in recoveries if recovery.committed}
    files = sum(recovery.files_moved + recovery.files_removed for recovery in recoveries)
    requeued, failed = [], []
    t = current_envsync.tables.synchronizations
    with connection() as conn:
        rows = conn.execute(sa.select(t).where(t.c.status.in_(ACTIVE)).order_by(t.c.id)).all()
    redis = current_envsync.redis
    for row in rows:
        info = SynchronizationInfo.from_row(row)
        try:
            job = Job.fetch(_job_id(info.id), connection=redis)
            status = job.get_status()
        except NoSuchJobError:
            job, status = None, None
        if info.status is SynchronizationStatus.SCHEDULED:
            # Any job that will not run it (lost, ended, or left by something else under its id) is replaced.
            if status not in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.STARTED):
                if job is not None:
                    job.delete()
                _enqueue(info)
                requeued.append(info.id)
        elif str(info.id) in applying:
            continue  # its apply still holds its staging folder: it ends (and says how) by itself
        elif str(info.id) in committed:
            # It died after its database commit: the journal's file moves were just finished.
            _succeeded(info, get_comparison(info.comparison_id).direction,
                       {"modules": selected_summary(info.comparison_id), "completed_after_restart": True})
        elif job is None or not _worker_alive(job):
            _failed(info, "The worker running it stopped before it finished (it was killed or lost its Redis "
                          "server); its database transaction was rolled back.", None,
                    {"modules": selected_summary(info.comparison_id)})
            failed.append(info.id)
    return Recovery(requeued, failed, files)


def _worker_alive(job) -> bool:  # noqa: ANN001
    """Whether the worker that holds ``job`` still runs (a killed worker's record lingers in Redis)."""
    import os

    from rq import Worker

    if not job.worker_name:
        return False
    for worker in Worker.all(connection=current_envsync.redis):
        if worker.name != job.worker_name:
            continue
        if worker.hostname == socket.gethostname() and worker.pid:
            try:
                os.kill(worker.pid, 0)
            except ProcessLookupError:
                return False
        return True
    return False


def wait_for_synchronization(synchronization_id: int, timeout: float | None = None) -> SynchronizationInfo:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = get_synchronization(synchronization_id)
        if info.status.finished:
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise NotAllowed(f"Synchronization #{synchronization_id} is still {info.status.value} after {timeout:.0f} s.")
        time.sleep(0.2)


# --- revert -----------------------------------------------------------------------------------------

TITLE_REVERT = "Revert: Synchronization process"


def revert_synchronization(synchronization_id: int, *, user: str | None) -> SynchronizationInfo:
    """Queue the revert of a successful synchronization: the target goes back to its state before it."""
    refusal = start_refusal()
    if refusal:
        raise NotAllowed(refusal)
    info = get_synchronization(synchronization_id)
    if info.status is not SynchronizationStatus.SUCCESS or info.test_import:
        what = "a test import, which saved nothing" if info.test_import else info.status.value
        raise NotAllowed(f"Synchronization #{info.id} is {what}; only a successful synchronization can be reverted.")
    first = active_synchronization()
    if first is not None:
        raise NotAllowed(f"Synchronization #{first.id} is {first.status.value}; revert when it has ended.")
    from ..jobs.synchronization import run_revert

    _message(info, TITLE_REVERT, "info", f"The revert of synchronization #{info.id} was asked for by "
                                         f"{user or 'unknown'}; it runs now.")
    enqueue(run_revert, info.id, user, job_id=job_id("revert", info.id))
    return info


def run_revert(synchronization_id: int, user: str | None) -> str:
    """The worker's side of a revert: all or nothing, refused if the target changed since."""
    from ..engine import apply as engine

    info = get_synchronization(synchronization_id)
    if info.status is not SynchronizationStatus.SUCCESS:
        return info.status.value
    direction = get_comparison(info.comparison_id).direction
    try:
        result = engine.revert(target_side(direction), list(current_envsync.modules),
                               engine.FolderBackupStore(backup_root()), str(info.id))
    except EnvSyncError as exc:
        _message(info, f"FAILURE: {TITLE_REVERT}", "failure",
                 f"The revert of synchronization #{info.id} was refused: {exc} Nothing was changed.")
        return "failure"
    with connection() as conn:
        from ..engine.compare import record_baseline

        record_baseline(conn, current_envsync.tables.baseline, result.baseline)
        t = current_envsync.tables.synchronizations
        conn.execute(t.update().where(t.c.id == info.id).values(
            status=SynchronizationStatus.REVERTED.value, reverted_by=user, reverted_at=utcnow()))
        conn.commit()
    undone = ", ".join(f"{action} {count}" for action, count in result.reverted.items() if count)
    _message(get_synchronization(info.id), f"Success: {TITLE_REVERT}", "success",
             f"Synchronization #{info.id} was reverted by {user or 'unknown'}: {direction.target} is back to its "
             f"state before it ({undone or 'nothing to undo'}).")
    return "success"


def wait_for_revert(synchronization_id: int, timeout: float | None = None) -> SynchronizationInfo:
    """Wait until the queued revert has run: reverted, or refused (its message says why)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        message = synchronization_message(synchronization_id)
        if message is not None and message.title in (f"Success: {TITLE_REVERT}", f"FAILURE: {TITLE_REVERT}"):
            return get_synchronization(synchronization_id)
        if deadline is not None and time.monotonic() > deadline:
            raise NotAllowed(f"The revert of synchronization #{synchronization_id} has not run after {timeout:.0f} s.")
        time.sleep(0.2)


def synchronization_message(synchronization_id: int):  # noqa: ANN201
    from .base import MessageInfo

    m = current_envsync.tables.messages
    with connection() as conn:
        row = conn.execute(sa.select(m).where(m.c.synchronization_id == synchronization_id)).first()
    return MessageInfo.from_row(row) if row else None


def list_synchronizations(limit: int = 100) -> list[SynchronizationInfo]:
    t = current_envsync.tables.synchronizations
    with connection() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).all()
    return [SynchronizationInfo.from_row(row) for row in rows]


__all__ = [
    "Recovery", "active_synchronization", "backup_folder", "cancel_synchronization", "get_synchronization",
    "list_synchronizations", "parse_when", "recover", "revert_synchronization", "run_revert", "run_synchronization",
    "schedule_synchronization", "synchronization_message", "wait_for_revert", "wait_for_synchronization",
]
_ = (as_utc, queue)
