"""The example shop back office: a Flask-Admin app with a PROD and a TEST instance, wired to envsync.

``flask --app example_host run`` serves PROD; ``FLASK_ENVSYNC_CURRENT_ENVIRONMENT=TEST`` serves TEST.
"""

from __future__ import annotations

import json
import os
from typing import Any

import sqlalchemy as sa
from flask import Flask, redirect, url_for
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_login import current_user
from flask_wtf import CSRFProtect

from envsync_plugin import EnvSync

from .models import db
from .sync_modules import MODULES


def _defaults(app: Flask) -> dict[str, Any]:
    instance = app.instance_path
    return {
        "SECRET_KEY": "dev-only-secret-key-change-me",
        "ENVSYNC_ENVIRONMENTS": {
            name: {
                "database_url": f"sqlite:///{os.path.join(instance, name.lower() + '.db')}",
                "media_root": os.path.join(instance, "media", name.lower()),
            }
            for name in ("PROD", "TEST")
        },
        "ENVSYNC_CURRENT_ENVIRONMENT": "PROD",
        "MAIL_SERVER": "localhost",
        "MAIL_PORT": 8025,
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,  # gallery uploads; keeps a stray huge POST out
    }


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The shop back office. Config: defaults, then ``FLASK_<KEY>`` variables, then ``config``."""
    # EXAMPLE_HOST_INSTANCE_PATH: where the databases, media and embedded Redis live (tests use one per test).
    app = Flask(__name__, instance_path=os.environ.get("EXAMPLE_HOST_INSTANCE_PATH") or None)
    app.config.update(_defaults(app))
    app.config.from_prefixed_env()
    app.config.update(config or {})
    _derive_database_uri(app)
    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    with app.app_context():
        _sqlite_foreign_keys(db.engine)
    CSRFProtect(app)

    from . import auth, views

    auth.init_app(app)
    current = str(app.config["ENVSYNC_CURRENT_ENVIRONMENT"]).upper()
    admin = Admin(
        app,
        name=f"Shop back office ({current})",
        theme=Bootstrap4Theme(base_template="shop/base.html", fluid=True),
        index_view=views.DashboardView(name="Dashboard", endpoint="admin", url="/admin"),
    )
    views.add_views(admin)
    views.init_app(app)
    EnvSync(app, db=db, admin=admin, modules=MODULES, permission=_may_synchronize, on_refused=auth.refuse)

    from .demo_data import demo_data_command

    app.cli.add_command(demo_data_command)

    @app.route("/")
    def home():  # noqa: ANN202 - the shop has no storefront here; the back office is the site
        return redirect(url_for("admin.index"))

    return app


def _derive_database_uri(app: Flask) -> None:
    """Flask-SQLAlchemy serves the environment this instance is, unless told otherwise."""
    environments = app.config["ENVSYNC_ENVIRONMENTS"]
    if isinstance(environments, str):
        environments = app.config["ENVSYNC_ENVIRONMENTS"] = json.loads(environments)
    current = str(app.config["ENVSYNC_CURRENT_ENVIRONMENT"]).upper()
    if not app.config.get("SQLALCHEMY_DATABASE_URI") and current in environments:
        app.config["SQLALCHEMY_DATABASE_URI"] = environments[current]["database_url"]


def _sqlite_foreign_keys(engine: sa.Engine) -> None:
    """SQLite ignores foreign keys unless each connection asks; the shop relies on them."""
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001, ANN202
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _may_synchronize() -> bool:
    return bool(current_user.is_authenticated and current_user.is_admin)

