"""System > Messages: what happened to each synchronization (and failed comparisons)."""

from __future__ import annotations

from flask_admin import expose

from .. import service
from .base import EnvSyncView


class MessagesView(EnvSyncView):
    @expose("/")
    def index(self) -> str:
        return self.page_or_partial("envsync/messages.html", "envsync/partials/messages_list.html",
                                    messages=service.list_messages())
