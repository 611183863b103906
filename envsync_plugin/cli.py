"""``flask envsync ...``: every command takes --json and exits non-zero with a one-line reason."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click
from flask.cli import AppGroup

from .errors import EnvSyncError

envsync_group = AppGroup("envsync", help="Synchronize content between PROD and TEST.")

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str, ensure_ascii=False))
    else:
        click.echo(text() if callable(text) else text)


def reasons(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an EnvSyncError into a one-line reason on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EnvSyncError as exc:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": str(exc)}, ensure_ascii=False))
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@envsync_group.command("init-db")
@json_option
@reasons
def init_db_command(as_json: bool) -> None:
    """Create envsync's own tables in this instance's database (hosts without migrations)."""
    from . import service

    names = service.init_db()
    emit(as_json, {"tables": names}, f"Created (if missing): {', '.join(names)}")


@envsync_group.command("worker")
@click.option("--burst", is_flag=True, help="Run the queued jobs, then quit.")
@reasons
def worker_command(burst: bool) -> None:
    """Run an RQ worker, with the scheduler, on the configured (or embedded) Redis."""
    from . import service

    service.run_worker(burst=burst)


@envsync_group.command("redis")
@click.option("--stop", is_flag=True, help="Stop the embedded Redis server of this instance folder.")
@json_option
@reasons
def redis_command(stop: bool, as_json: bool) -> None:
    """Show (or stop) the Redis server envsync uses."""
    from flask import current_app

    from .extension import current_envsync
    from .queue import embedded_redis_for

    url = current_envsync.settings.redis_url
    if url:
        if stop:
            raise EnvSyncError("ENVSYNC_REDIS_URL is set: envsync does not stop a Redis server it did not start.")
        emit(as_json, {"url": url, "embedded": False}, f"Redis: {url} (configured)")
        return
    embedded = embedded_redis_for(current_app.instance_path)
    if stop:
        stopped = embedded.stop()
        emit(as_json, {"stopped": stopped, "url": embedded.url},
             "Embedded Redis stopped." if stopped else "Embedded Redis was not running.")
        return
    embedded.start()
    emit(as_json, {"url": embedded.url, "embedded": True, "pid": embedded.pid()},
         f"Embedded Redis: {embedded.url} (pid {embedded.pid()})")


def _user_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--user", metavar="EMAIL", help="Who the messages and e-mails are for.")(func)


def _counts_line(counts: dict[str, int]) -> str:
    return (f"Conflicts {counts.get('conflict', 0)}, New {counts.get('new', 0)}, "
            f"Modified {counts.get('modified', 0)}, Deleted {counts.get('deleted', 0)}")


def _comparison_data(info: Any) -> dict[str, Any]:
    return {"id": info.id, "direction": info.direction.value, "mode": info.mode.value, "modules": info.modules,
            "gallery_folders": info.gallery_folders, "status": info.status.value, "counts": info.counts,
            "progress": {"done": info.progress_done, "total": info.progress_total}, "error": info.error,
            "requested_by": info.requested_by, "created_at": info.created_at}


def _progress_printer() -> Callable[[Any], None]:
    """A one-line progress bar on a terminal; nothing when the output is a file or a pipe."""
    if not sys.stderr.isatty():
        return lambda info: None

    def show(info: Any) -> None:
        width = 30
        filled = int(width * info.percent / 100)
        click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {info.progress_done}/{info.progress_total} "
                   f"records compared", nl=False, err=True)
        if info.status.value in ("ready", "failed"):
            click.echo("", err=True)

    return show


@envsync_group.command("compare")
@click.option("--direction", required=True, help="prod-to-test or test-to-prod.")
@click.option("--new-only", is_flag=True, help="Only records that do not exist in the target.")
@click.option("--module", "modules", multiple=True, metavar="KEY", help="A module to compare (repeatable).")
@click.option("--gallery-folder", "folders", multiple=True, metavar="NAME", help="A gallery folder (repeatable).")
@click.option("--wait", is_flag=True, help="Wait until the comparison is ready and print the counts.")
@_user_option
@json_option
@reasons
def compare_command(direction: str, new_only: bool, modules: tuple[str, ...], folders: tuple[str, ...],
                    wait: bool, user: str | None, as_json: bool) -> None:
    """Queue a comparison of the two environments."""
    from . import service
    from .extension import current_envsync

    keys = list(modules) or current_envsync.modules.keys
    picked = {}
    if folders:
        pickers = [key for key in service.parse_modules(keys) if current_envsync.modules[key].picker]
        if not pickers:
            raise EnvSyncError("--gallery-folder needs the gallery_folders module (or system_config).")
        picked = {pickers[0]: list(folders)}
    info = service.start_comparison(direction, "new" if new_only else "all", keys, picked, user=user)
    if wait:
        info = service.wait_for_comparison(info.id, on_progress=None if as_json else _progress_printer())
        if info.status.value == "failed":
            emit(as_json, _comparison_data(info), "")
            raise EnvSyncError(info.error or f"Comparison #{info.id} failed.")
        emit(as_json, _comparison_data(info), f"Comparison #{info.id} ready: {_counts_line(info.counts)}")
        return
    emit(as_json, _comparison_data(info), f"Comparison #{info.id} queued ({info.direction.arrow}).")


@envsync_group.command("show")
@click.argument("comparison_id", type=int)
@json_option
@reasons
def show_command(comparison_id: int, as_json: bool) -> None:
    """A comparison: status, counts and its changes."""
    from . import service

    info = service.get_comparison(comparison_id)
    changes = service.all_changes(comparison_id)
    data = _comparison_data(info) | {"changes": [change.as_dict() for change in changes]}

    def text() -> str:
        lines = [f"Comparison #{info.id} {info.direction.arrow} ({info.mode.value}): {info.status.value}",
                 _counts_line(info.counts)]
        if info.error:
            lines.append(f"Error: {info.error}")
        for change in changes:
            mark = "[x]" if change.selected else ("[-]" if not change.selectable else "[ ]")
            line = (f"{mark} {change.id:>6} {change.tab.value:<9} {change.module:<16} {change.table_name:<16} "
                    f"{json.dumps(change.key_value):<12} {change.label}")
            if change.reason:
                line += f"  -- {change.reason}"
            lines.append(line)
        return "\n".join(lines)

    emit(as_json, data, text)


@envsync_group.command("select")
@click.argument("comparison_id", type=int)
@click.option("--all", "select_all", is_flag=True, help="Check every change (that may be applied).")
@click.option("--none", "select_none", is_flag=True, help="Uncheck every change.")
@click.option("--change", "change_ids", multiple=True, type=int, metavar="CID", help="A change id (repeatable).")
@click.option("--off", is_flag=True, help="With --change: uncheck instead of check.")
@json_option
@reasons
def select_command(comparison_id: int, select_all: bool, select_none: bool, change_ids: tuple[int, ...],
                   off: bool, as_json: bool) -> None:
    """Check or uncheck changes."""
    from . import service

    if sum([select_all, select_none, bool(change_ids)]) != 1:
        raise EnvSyncError("Give exactly one of --all, --none or --change CID.")
    if off and not change_ids:
        raise EnvSyncError("--off goes with --change.")
    if change_ids:
        updated = service.select_changes(comparison_id, change_ids=list(change_ids), selected=not off)
    else:
        updated = service.select_changes(comparison_id, selected=select_all)
    counts = service.selection_counts(comparison_id)
    emit(as_json, {"updated": updated, "selection": counts},
         f"{updated} change(s) updated. Checked: "
         + ", ".join(f"{tab} {value['selected']}/{value['total']}" for tab, value in counts.items()))


def _synchronization_data(info: Any) -> dict[str, Any]:
    return {"id": info.id, "comparison_id": info.comparison_id, "status": info.status.value,
            "test_import": info.test_import, "scheduled_at": info.scheduled_at, "requested_by": info.requested_by,
            "started_at": info.started_at, "finished_at": info.finished_at, "canceled_by": info.canceled_by,
            "summary": info.summary, "error": info.error, "mail_error": info.mail_error}


@envsync_group.command("schedule")
@click.argument("comparison_id", type=int)
@click.option("--at", metavar="ISO-8601", help="When (default: now); without a zone, in ENVSYNC_TIMEZONE.")
@click.option("--test-import", is_flag=True, help="Execute and check everything, then roll back: nothing is saved.")
@click.option("--wait", is_flag=True, help="Wait until it has run and print the outcome.")
@_user_option
@json_option
@reasons
def schedule_command(comparison_id: int, at: str | None, test_import: bool, wait: bool, user: str | None,
                     as_json: bool) -> None:
    """Schedule the synchronization of a comparison's checked changes."""
    from . import service

    info = service.schedule_synchronization(comparison_id, at=at, test_import=test_import, user=user)
    if wait:
        info = service.wait_for_synchronization(info.id)
        emit(as_json, _synchronization_data(info), f"Synchronization #{info.id}: {info.status.value}"
             + (f" -- {info.error}" if info.error else ""))
        if info.status.value != "success":
            sys.exit(1)
        return
    emit(as_json, _synchronization_data(info),
         f"Synchronization #{info.id} scheduled for {service.format_datetime(info.scheduled_at)}"
         + (" (test import)" if test_import else "") + ".")


@envsync_group.command("cancel")
@click.argument("synchronization_id", type=int)
@_user_option
@json_option
@reasons
def cancel_command(synchronization_id: int, user: str | None, as_json: bool) -> None:
    """Cancel a scheduled or running synchronization."""
    from . import service

    info = service.cancel_synchronization(synchronization_id, user=user)
    text = (f"Synchronization #{info.id} canceled." if info.status.value == "canceled"
            else f"Synchronization #{info.id} is running: it will stop at its next checkpoint and roll back.")
    emit(as_json, _synchronization_data(info), text)


@envsync_group.command("messages")
@json_option
@reasons
def messages_command(as_json: bool) -> None:
    """The Messages list, newest first."""
    from . import service

    messages = service.list_messages()
    data = [{"id": m.id, "title": m.title, "level": m.level, "body": m.body, "synchronization_id":
             m.synchronization_id, "comparison_id": m.comparison_id, "updated_at": m.updated_at} for m in messages]
    emit(as_json, data, lambda: "\n".join(
        f"{service.format_datetime(m.updated_at)}  {m.title}\n    {m.body}" for m in messages) or "No messages.")


@envsync_group.command("revert")
@click.argument("synchronization_id", type=int)
@click.option("--wait", is_flag=True, help="Wait until the revert has run.")
@_user_option
@json_option
@reasons
def revert_command(synchronization_id: int, wait: bool, user: str | None, as_json: bool) -> None:
    """Restore the target as it was before a successful synchronization."""
    from . import service

    info = service.revert_synchronization(synchronization_id, user=user)
    if wait:
        info = service.wait_for_revert(synchronization_id)
        if info.status.value != "reverted":
            message = service.synchronization_message(synchronization_id)
            raise EnvSyncError(message.body if message else "The revert did not complete.")
        emit(as_json, _synchronization_data(info), f"Synchronization #{info.id} reverted.")
        return
    emit(as_json, _synchronization_data(info), f"Revert of synchronization #{info.id} queued.")
