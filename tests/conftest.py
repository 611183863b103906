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
    from example_host.models import db, shop_tables

    sides = []
    for name in ("PROD", "TEST"):
        url = make_database_url(db_kind)
        engine = create_environment_engine(url)
        # The shop's tables only: envsync's own are created where envsync runs (host, demo).
        db.metadata.create_all(engine, tables=shop_tables())
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


# --- the example host, a worker in its own process ------------------------------------------------

@dataclass
class Host:
    """A PROD instance of the example shop: its environment variables (FLASK_*) and its app."""

    env: dict[str, str]
    instance: Path
    prod: Side
    test: Side
    mailbox: Mailbox

    def app(self, **overrides):
        """A new app object for this host, configured exactly as a worker process sees it."""
        import json

        from example_host import create_app

        old = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)
        try:
            config = {key[len("FLASK_"):]: json.loads(value) if value[:1] in "{[" else value
                      for key, value in self.env.items() if key.startswith("FLASK_")}
            config.update(overrides)
            return create_app(config)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def host(shop_pair, redis_url, smtp_server, tmp_path) -> Iterator[Host]:
    """The example shop's PROD instance over ``shop_pair`` (SQLite or PostgreSQL), with the embedded or
    the system Redis and a real SMTP server; envsync's tables created in the PROD database."""
    import json

    prod, test = shop_pair
    instance = tmp_path / "instance"
    instance.mkdir()
    env = {
        "EXAMPLE_HOST_INSTANCE_PATH": str(instance),
        "FLASK_SECRET_KEY": "tests",
        "FLASK_ENVSYNC_ENVIRONMENTS": json.dumps({
            "PROD": {"database_url": prod.url, "media_root": str(prod.media_root)},
            "TEST": {"database_url": test.url, "media_root": str(test.media_root)},
        }),
        "FLASK_ENVSYNC_CURRENT_ENVIRONMENT": "PROD",
        "FLASK_SQLALCHEMY_DATABASE_URI": prod.url,
        "FLASK_MAIL_SERVER": smtp_server.host,
        "FLASK_MAIL_PORT": str(smtp_server.port),
        "FLASK_ENVSYNC_MAIL_SENDER": "envsync@shop.example",
        # A queue of its own: a worker of an earlier test that is still shutting down must never
        # take this test's jobs from a shared system Redis.
        "FLASK_ENVSYNC_QUEUE_NAME": f"envsync-{uuid.uuid4().hex[:12]}",
    }
    if redis_url:
        env["FLASK_ENVSYNC_REDIS_URL"] = redis_url
    result = Host(env, instance, prod, test, smtp_server)
    app = result.app()
    with app.app_context():
        from envsync_plugin import service

        service.init_db()
    yield result
    if not redis_url:
        from envsync_plugin.queue import embedded_redis_for

        embedded_redis_for(instance).stop()


@dataclass
class WorkerProcess:
    process: object
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def start_worker(host, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start ``flask envsync worker`` for ``host`` in its own process (stopped at the end)."""
    import signal
    import subprocess
    import sys

    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        env = {**os.environ, **host.env}
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "example_host", "envsync", "worker", *args],
            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        started.append(WorkerProcess(process, log))
        return started[-1]

    yield start
    for worker in started:
        process = worker.process
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
        # Shown by pytest only when the test failed: what the worker did.
        print(f"--- {worker.log.name} ---\n{worker.output()}")


@pytest.fixture
def worker(start_worker) -> WorkerProcess:
    """A worker running for the whole test."""
    return start_worker()


@pytest.fixture
def demo(host) -> Host:
    """``host`` with the example shop's demo data in both environments (TEST = PROD + documented differences)."""
    from example_host.demo_data import seed

    seed(host.prod.engine, host.test.engine, host.prod.media_root, host.test.media_root, reset=True)
    with host.app().app_context():
        from envsync_plugin import service

        service.init_db()
    return host
