"""Flask-Admin views: System > Synchronization and System > Messages, with their htmx partials."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from flask_admin import Admin

    from ..extension import EnvSync


def add_views(admin: Admin, extension: EnvSync, app: Flask) -> None:
    from .messages import MessagesView
    from .synchronization import SynchronizationView

    admin.add_view(SynchronizationView(extension, name="Synchronization", category=extension.category,
                                       endpoint="envsync_synchronization", url="synchronization"))
    admin.add_view(MessagesView(extension, name="Messages", category=extension.category,
                                endpoint="envsync_messages", url="synchronization/messages"))
