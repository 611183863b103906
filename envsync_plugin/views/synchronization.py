"""System > Synchronization: settings, comparison progress, changes review and schedule."""

from __future__ import annotations

from flask_admin import expose

from .. import service
from .base import EnvSyncView


class SynchronizationView(EnvSyncView):
    @expose("/")
    def index(self) -> str:
        return self.render("envsync/synchronization.html", overview=service.overview())
