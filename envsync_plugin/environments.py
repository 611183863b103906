"""PROD and TEST as this process sees them: one SQLAlchemy engine each, their media roots."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config import EnvironmentConfig, Settings


def create_environment_engine(url: str) -> Engine:
    """An engine for an environment's database.

    SQLite gets its foreign keys switched on, and write-ahead logging: a synchronization writes in
    one long transaction, and in WAL mode the back office (and envsync's own status pages, whose
    tables may live in that same file) keep reading while it runs instead of failing "database is locked".
    """
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


@dataclass
class Environment:
    """One environment: its name, its database engine and its media root."""

    name: str
    engine: Engine
    media_root: Path


class Environments:
    """The two environments of an app; engines are made on first use and rebuilt after a fork."""

    def __init__(self, settings: Settings) -> None:
        self._configs: dict[str, EnvironmentConfig] = settings.environments
        self.current = settings.current_environment
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Environment:
        config = self._configs[name]
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._engines[name] = create_environment_engine(config.database_url)
        return Environment(name, engine, config.media_root)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._configs)

    def after_fork(self) -> None:
        """Drop pooled connections inherited from a parent process (an RQ work horse is a fork)."""
        for engine in self._engines.values():
            engine.dispose(close=False)

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
