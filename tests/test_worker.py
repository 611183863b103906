"""Jobs queued by the web process run in a worker process, inside the app context, through Redis."""

from __future__ import annotations

import os
import time

from rq.job import Job

from envsync_plugin import service
from envsync_plugin.extension import current_envsync
from envsync_plugin.jobs.health import ping


def wait_for_result(job: Job, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh()
        if job.is_finished:
            return job.return_value()
        assert not job.is_failed, job.latest_result().exc_string if job.latest_result() else "failed"
        time.sleep(0.1)
    raise AssertionError("the worker did not run the job in time")


def test_a_job_queued_by_the_web_process_runs_in_a_worker_process(host, worker):
    app = host.app()
    with app.app_context():
        job = service.enqueue(ping, "hello", job_id="envsync-ping-test")
        result = wait_for_result(job)
        embedded = current_envsync.settings.redis_url is None
    assert result["token"] == "hello"
    assert result["environment"] == "PROD"  # the job ran with the app's configuration
    assert result["worker_pid"] != os.getpid()
    if embedded:
        assert (host.instance / "envsync-redis").is_dir()
    assert worker.process.poll() is None, worker.output()


def test_a_burst_worker_runs_the_queued_jobs_and_exits(host, start_worker):
    app = host.app()
    with app.app_context():
        job = service.enqueue(ping, "burst", job_id="envsync-ping-burst")
    burst = start_worker("--burst")
    assert burst.process.wait(timeout=120) == 0, burst.output()
    with app.app_context():
        job.refresh()
        assert job.return_value()["token"] == "burst"


def test_a_warm_shutdown_does_not_wait_for_the_pub_sub_threads_long_read(host):
    """RQ's pub/sub thread reads with a 60 s timeout. When it has read the unsubscribe reply before it
    is told to stop (made certain here by a pause after the UNSUBSCRIBE), a plain RQ worker's shutdown
    waits out that read; envsync's worker stops at once."""
    import threading

    from envsync_plugin.queue import PromptWorker

    with host.app().app_context():
        worker = PromptWorker([service.queue()], connection=current_envsync.redis)
        worker.subscribe()
        time.sleep(0.5)  # the thread is in its read
        pubsub = worker.pubsub
        unsubscribe = pubsub.unsubscribe

        def unsubscribe_then_pause(*args):
            unsubscribe(*args)
            time.sleep(0.5)  # the thread reads the reply before it is told to stop

        pubsub.unsubscribe = unsubscribe_then_pause
        done = threading.Thread(target=worker.unsubscribe, daemon=True)
        done.start()
        done.join(timeout=15)
        assert not done.is_alive(), "the shutdown waited on the pub/sub thread's 60 s read"
        assert not worker.pubsub_thread.is_alive()
