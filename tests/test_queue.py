"""The queue's Redis: the embedded server is one per instance folder, shared, and stops cleanly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from envsync_plugin.queue import EmbeddedRedis


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def embedded(tmp_path):
    server = EmbeddedRedis(tmp_path / "envsync-redis")
    yield server
    server.stop()


def test_embedded_redis_outlives_the_process_that_started_it(embedded):
    folder = embedded.folder
    run_python(
        "from envsync_plugin.queue import EmbeddedRedis\n"
        f"EmbeddedRedis({str(folder)!r}).start().set('greeting', 'hello')\n"
    )
    assert embedded.is_running()
    assert embedded.client().get("greeting") == b"hello"


def test_every_process_of_one_folder_shares_one_server(embedded):
    code = (
        "from envsync_plugin.queue import EmbeddedRedis\n"
        f"server = EmbeddedRedis({str(embedded.folder)!r}); server.start(); print(server.pid())\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    pids = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(pids) == 1
    assert pids == {str(embedded.pid())}


def test_stop_shuts_the_server_down_and_keeps_its_data(embedded):
    embedded.start().set("kept", "yes")
    assert embedded.stop() is True
    assert not embedded.is_running()
    assert embedded.stop() is False
    assert embedded.start().get("kept") == b"yes"


def test_a_long_instance_path_still_gets_a_working_socket(tmp_path):
    server = EmbeddedRedis(tmp_path / ("deep" * 30) / "envsync-redis")
    try:
        assert len(str(server.socket)) <= 100
        assert server.start().ping()
    finally:
        server.stop()
