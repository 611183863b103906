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
