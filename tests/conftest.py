"""Shared fixtures: real databases (SQLite and PostgreSQL), media folders, Redis, SMTP, workers."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get(
    "ENVSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DB_KINDS = [k for k in os.environ.get("ENVSYNC_TEST_DATABASES", "sqlite,postgresql").split(",") if k]


def missing(what: str) -> None:
    """A required service is missing: an error under CI, a skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(what)


_postgres_ok: bool | None = None


def _postgres_reachable() -> bool:
    global _postgres_ok
    if _postgres_ok is None:
        try:
            engine = sa.create_engine(POSTGRES_ADMIN_URL)
            with engine.connect():
                pass
            engine.dispose()
            _postgres_ok = True
        except Exception:  # noqa: BLE001 - any failure means: not reachable
            _postgres_ok = False
    return _postgres_ok


@pytest.fixture(scope="session")
def make_database_url(tmp_path_factory) -> Iterator[Callable[[str], str]]:
    """Factory: a URL of a new, empty database of the given kind ("sqlite" or "postgresql")."""
    created: list[str] = []
    folder = tmp_path_factory.mktemp("databases")

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{folder / (uuid.uuid4().hex + '.db')}"
        if kind == "postgresql":
            if not _postgres_reachable():
                missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
            name = f"envsync_test_{uuid.uuid4().hex[:12]}"
            engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            engine.dispose()
            created.append(name)
            return sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        raise ValueError(kind)

    yield make

    if created:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for name in created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=DB_KINDS)
def db_kind(request) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return request.param


@dataclass
class Side:
    """One environment of a test: its database URL, an engine and its media root."""

    name: str
    url: str
    engine: sa.Engine
    media_root: Path


@pytest.fixture
def shop_pair(db_kind, make_database_url, tmp_path) -> Iterator[tuple[Side, Side]]:
    """PROD and TEST: two empty databases of ``db_kind`` with the example shop's tables, two media roots."""
    from envsync_plugin.environments import create_environment_engine
    from example_host.models import db

    sides = []
    for name in ("PROD", "TEST"):
        url = make_database_url(db_kind)
        engine = create_environment_engine(url)
        db.metadata.create_all(engine)
        media = tmp_path / f"media-{name.lower()}"
        media.mkdir()
        sides.append(Side(name, url, engine, media))
    yield sides[0], sides[1]
    for side in sides:
        side.engine.dispose()


# --- Redis ----------------------------------------------------------------------------------------

SYSTEM_REDIS_URL = os.environ.get("ENVSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_KINDS = [k for k in os.environ.get("ENVSYNC_TEST_REDIS", "embedded,system").split(",") if k]
_redis_db_counter = iter(range(1, 16))


@pytest.fixture(params=REDIS_KINDS)
def redis_kind(request) -> str:
    """Each test using it runs with the embedded Redis and with the system Redis server."""
    return request.param


@pytest.fixture
def redis_url(redis_kind) -> Iterator[str | None]:
    """None for the embedded server (ENVSYNC_REDIS_URL unset), else a clean database of the system server."""
    if redis_kind == "embedded":
        yield None
        return
    from redis import Redis

    number = next(_redis_db_counter, None) or 15
    url = f"{SYSTEM_REDIS_URL}/{number}"
    try:
        client = Redis.from_url(url)
        client.ping()
    except Exception:  # noqa: BLE001
        missing(f"the system Redis server is not reachable at {SYSTEM_REDIS_URL}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# --- SMTP -----------------------------------------------------------------------------------------

@dataclass
class Mailbox:
    """What a real SMTP server on loopback received."""

    host: str
    port: int
    messages: list

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list:
        import time

        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """An aiosmtpd server on 127.0.0.1 collecting every message as an email.message.EmailMessage."""
    import email
    import email.policy
    import socket

    from aiosmtpd.controller import Controller

    messages: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield Mailbox("127.0.0.1", port, messages)
    controller.stop()
