"""The EnvSync extension object: wires config, environments, tables, queue, views and CLI into an app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from flask import Blueprint, Flask, abort, current_app
from werkzeug.local import LocalProxy

from .config import Settings, load_settings
from .environments import Environments
from .models import Tables, define_tables
from .modules import ModuleRegistry, SyncModule

if TYPE_CHECKING:
    from flask_admin import Admin
    from redis import Redis


#: What the settings page lists as never synchronized (the seed platform's list).
NEVER_SYNCHRONIZED = (
    "System settings (except mobile app JSONs)", "Translations", "Promotion codes", "Campaigns", "Titles",
    "Users", "Payment types", "Delivery types", "SEO settings", "Orders", "Reviews", "Beauty Advisor module",
)


def _default_user_email() -> str | None:
    try:
        from flask_login import current_user
    except ImportError:  # pragma: no cover - Flask-Login is optional for hosts
        return None
    return getattr(current_user, "email", None) if current_user and current_user.is_authenticated else None


@dataclass
class EnvSyncState:
    """What envsync keeps per app, under ``app.extensions["envsync"]``."""

    extension: EnvSync
    app: Flask
    settings: Settings
    environments: Environments
    _redis: Redis | None = field(default=None, repr=False)

    @property
    def tables(self) -> Tables:
        return self.extension.tables

    @property
    def modules(self) -> ModuleRegistry:
        return self.extension.modules

    @property
    def db(self) -> Any:
        return self.extension.db

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            from .queue import connect

            self._redis = connect(self.settings.redis_url, self.app.instance_path)
        return self._redis

    def after_fork(self) -> None:
        self.environments.after_fork()
        self._redis = None


class EnvSync:
    """Adds System > Synchronization to a Flask-Admin back office.

    ``EnvSync(app, db=db, admin=admin, modules=[...], permission=...)``, or ``EnvSync(db=db, ...)``
    then ``init_app(app)``. ``permission`` is called on every envsync request and must return True
    for users allowed to synchronize; ``on_refused`` (optional) returns the response for the others
    (default: 403). ``user_email`` returns the signed-in user's address (default: Flask-Login's
    ``current_user.email``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: Any,
        admin: Admin | None = None,
        modules: Iterable[SyncModule] = (),
        permission: Callable[[], bool] | None = None,
        on_refused: Callable[[], Any] | None = None,
        user_email: Callable[[], str | None] = _default_user_email,
        category: str = "System",
        never_synchronized: Iterable[str] = NEVER_SYNCHRONIZED,
    ) -> None:
        self.db = db
        self.admin = admin
        self.modules = ModuleRegistry(list(modules))
        self.tables = define_tables(db.metadata)
        self.permission = permission or (lambda: False)
        self.on_refused = on_refused or (lambda: abort(403))
        self.user_email = user_email
        self.category = category
        self.never_synchronized = list(never_synchronized)
        #: Called by ``flask envsync worker`` before it takes jobs (recovery of interrupted work).
        self.worker_start_hooks: list[Callable[[], None]] = [_recover]
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, admin: Admin | None = None) -> None:
        if "envsync" in app.extensions:
            raise RuntimeError(
                "EnvSync is already registered on this app. Create one EnvSync per app, or call "
                "init_app on the existing one (app.extensions['envsync'].extension) only once."
            )
        settings = load_settings(app.config)
        state = EnvSyncState(self, app, settings, Environments(settings))
        app.extensions["envsync"] = state

        if "mail" not in app.extensions:
            from flask_mail import Mail

            Mail(app)

        app.register_blueprint(
            Blueprint("envsync", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/envsync/static")
        )
        from .cli import envsync_group
        from .service import format_datetime

        app.add_template_filter(format_datetime, "envsync_datetime")

        app.cli.add_command(envsync_group)

        admin = admin or self.admin
        if admin is not None:
            from .views import add_views

            add_views(admin, self, app)

    def check_permission(self) -> bool:
        return bool(self.permission())


def _recover() -> None:
    from .service import recover

    recover()


def _get_state() -> EnvSyncState:
    try:
        return current_app.extensions["envsync"]
    except KeyError:
        raise RuntimeError("EnvSync is not registered on this app: call EnvSync(app, ...) or init_app(app).") from None


#: The current app's envsync state.
current_envsync: EnvSyncState = LocalProxy(_get_state)  # type: ignore[assignment]
