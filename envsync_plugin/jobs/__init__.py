"""RQ job functions (thin: take ids, call the service) and the job class that gives them the app.

A worker started by ``flask envsync worker`` runs every job inside the app context of the app it
was started with (the flask-rq pattern); jobs are plain importable functions.
"""

from __future__ import annotations

from flask import Flask
from rq.job import Job


def app_job_class(app: Flask) -> type[Job]:
    """A Job class whose jobs run inside ``app``'s context, with connections fresh for the fork."""

    class AppContextJob(Job):
        def perform(self):  # noqa: ANN202 - RQ's signature
            with app.app_context():
                # The work horse is a fork of the worker: pooled connections must not be shared.
                app.extensions["envsync"].after_fork()
                db = app.extensions["envsync"].db
                for engine in getattr(db, "engines", {}).values():
                    engine.dispose(close=False)
                return super().perform()

    return AppContextJob
