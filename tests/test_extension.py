"""The extension: both ways of initialising it, and the start-up errors that name the key."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_admin import Admin
from flask_sqlalchemy import SQLAlchemy

from envsync_plugin import ConfigError, EnvSync, SyncModule, SyncTable, current_envsync


def config(tmp_path, **overrides):
    values = {
        "SECRET_KEY": "test",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'prod.db'}",
        "ENVSYNC_ENVIRONMENTS": {
            "PROD": {"database_url": f"sqlite:///{tmp_path / 'prod.db'}", "media_root": str(tmp_path / "prod")},
            "TEST": {"database_url": f"sqlite:///{tmp_path / 'test.db'}", "media_root": str(tmp_path / "test")},
        },
        "ENVSYNC_CURRENT_ENVIRONMENT": "PROD",
    }
    values.update(overrides)
    return values


def make_app(tmp_path, **overrides) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(config(tmp_path, **overrides))
    return app


MODULES = [SyncModule("pages", "Pages", tables=[SyncTable("pages", identity=("slug",))])]


def test_init_with_app_registers_the_extension(tmp_path):
    app = make_app(tmp_path)
    db = SQLAlchemy(app)
    ext = EnvSync(app, db=db, modules=MODULES)
    with app.app_context():
        assert current_envsync.extension is ext
        assert current_envsync.settings.current_environment == "PROD"
        assert current_envsync.modules.keys == ["pages"]
    assert app.extensions["envsync"].extension is ext


def test_init_app_later_serves_several_apps(tmp_path):
    db = SQLAlchemy()
    ext = EnvSync(db=db, modules=MODULES)
    first, second = make_app(tmp_path / "a"), make_app(tmp_path / "b", ENVSYNC_CURRENT_ENVIRONMENT="TEST")
    for app in (first, second):
        db.init_app(app)
        ext.init_app(app)
    with first.app_context():
        assert current_envsync.settings.current_environment == "PROD"
    with second.app_context():
        assert current_envsync.settings.current_environment == "TEST"
    assert not hasattr(ext, "app")


def test_defaults_are_applied_to_the_config(tmp_path):
    app = make_app(tmp_path)
    EnvSync(app, db=SQLAlchemy(app))
    assert app.config["ENVSYNC_TIMEZONE"] == "UTC"
    assert app.config["ENVSYNC_REDIS_URL"] is None


def test_second_registration_is_refused_with_what_to_do(tmp_path):
    app = make_app(tmp_path)
    db = SQLAlchemy(app)
    EnvSync(app, db=db)
    with pytest.raises(RuntimeError, match="already registered.*init_app"):
        EnvSync(app, db=db)


def test_views_are_added_under_system(tmp_path):
    app = make_app(tmp_path)
    admin = Admin(app)
    EnvSync(app, db=SQLAlchemy(app), admin=admin)
    endpoints = {(view.category, view.name, view.endpoint) for view in admin._views}
    assert ("System", "Synchronization", "envsync_synchronization") in endpoints
    assert ("System", "Messages", "envsync_messages") in endpoints


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ENVSYNC_ENVIRONMENTS": None}, "ENVSYNC_ENVIRONMENTS is required"),
        ({"ENVSYNC_ENVIRONMENTS": {"PROD": {"database_url": "sqlite://", "media_root": "/tmp/p"}}},
         "ENVSYNC_ENVIRONMENTS has no TEST environment"),
        ({"ENVSYNC_ENVIRONMENTS": "{not json"}, "ENVSYNC_ENVIRONMENTS is not valid JSON"),
        ({"ENVSYNC_ENVIRONMENTS": {"PROD": {"database_url": "sqlite:///a"}, "TEST": {}}},
         r"ENVSYNC_ENVIRONMENTS\['PROD'\] needs media_root"),
        ({"ENVSYNC_ENVIRONMENTS": {"PROD": {"database_url": "sqlite:///a", "media_root": "/tmp/a"},
                                   "TEST": {"database_url": "sqlite:///a", "media_root": "/tmp/b"}}},
         "same database_url"),
        ({"ENVSYNC_CURRENT_ENVIRONMENT": "STAGING"}, 'ENVSYNC_CURRENT_ENVIRONMENT must be "PROD" or "TEST"'),
        ({"ENVSYNC_CURRENT_ENVIRONMENT": None}, "ENVSYNC_CURRENT_ENVIRONMENT is required"),
        ({"ENVSYNC_TIMEZONE": "Mars/Olympus"}, "ENVSYNC_TIMEZONE 'Mars/Olympus' is not a known time zone"),
        ({"ENVSYNC_REDIS_URL": "http://localhost"}, "ENVSYNC_REDIS_URL must be a redis://"),
        ({"ENVSYNC_MAIL_SENDER": "nobody"}, "ENVSYNC_MAIL_SENDER must be an e-mail address"),
        ({"ENVSYNC_TIMEZNE": "UTC"}, "ENVSYNC_TIMEZNE is not an envsync setting. Did you mean ENVSYNC_TIMEZONE"),
    ],
)
def test_a_wrong_setting_fails_at_start_up_naming_the_key(tmp_path, overrides, message):
    app = make_app(tmp_path, **overrides)
    with pytest.raises(ConfigError, match=message):
        EnvSync(app, db=SQLAlchemy(app))
    assert "envsync" not in app.extensions


def test_environments_given_as_json_text_are_accepted(tmp_path):
    import json

    app = make_app(tmp_path)
    app.config["ENVSYNC_ENVIRONMENTS"] = json.dumps(app.config["ENVSYNC_ENVIRONMENTS"])
    EnvSync(app, db=SQLAlchemy(app))
    with app.app_context():
        assert set(current_envsync.settings.environments) == {"PROD", "TEST"}


def test_a_module_may_not_declare_envsyncs_own_tables():
    with pytest.raises(ConfigError, match="never synchronized"):
        EnvSync(db=SQLAlchemy(), modules=[SyncModule("x", "X", tables=[SyncTable("envsync_changes")])])


def test_init_db_creates_the_plugin_tables(tmp_path):
    app = make_app(tmp_path)
    db = SQLAlchemy(app)
    EnvSync(app, db=db)
    result = app.test_cli_runner().invoke(args=["envsync", "init-db", "--json"])
    assert result.exit_code == 0, result.output
    import sqlalchemy as sa

    with app.app_context():
        names = set(sa.inspect(db.engine).get_table_names())
    assert {"envsync_comparisons", "envsync_changes", "envsync_synchronizations", "envsync_messages",
            "envsync_baseline"} <= names
