"""The example shop back office: its pages, who may see them, its gallery, and its demo data."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from PIL import Image

from example_host import create_app
from example_host.demo_data import build_pair, seed
from example_host.models import NEVER_SYNCHRONIZED_TABLES, db
from example_host.sync_modules import mobile_app_images
from example_host.views import VIEWS

ENVSYNC_ENDPOINTS = ("envsync_synchronization.index", "envsync_messages.index")
CONTENT_ENDPOINTS = ("cms_pages", "sliders", "slides", "gallery_folders", "gallery_images", "categories", "products")


@pytest.fixture(autouse=True)
def own_instance(tmp_path, monkeypatch):
    """Each test's app has an instance folder of its own, and the embedded Redis a page may start there
    is stopped after it (else it would keep running in the checkout's instance/ folder)."""
    from envsync_plugin.queue import embedded_redis_for

    instance = tmp_path / "instance"
    monkeypatch.setenv("EXAMPLE_HOST_INSTANCE_PATH", str(instance))
    yield
    embedded_redis_for(instance).stop()


def shop_config(tmp_path: Path, prod_url: str, test_url: str, current: str = "PROD") -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "ENVSYNC_ENVIRONMENTS": {
            "PROD": {"database_url": prod_url, "media_root": str(tmp_path / "media" / "prod")},
            "TEST": {"database_url": test_url, "media_root": str(tmp_path / "media" / "test")},
        },
        "ENVSYNC_CURRENT_ENVIRONMENT": current,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 1,  # nothing here sends mail; a refused connection would say so loudly
    }


def environments(app: Flask):
    state = app.extensions["envsync"]
    return state.environments["PROD"], state.environments["TEST"]


def seeded_app(tmp_path: Path, prod_url: str, test_url: str, current: str = "PROD") -> Flask:
    app = create_app(shop_config(tmp_path, prod_url, test_url, current))
    prod, test = environments(app)
    seed(prod.engine, test.engine, prod.media_root, test.media_root)
    return app


@pytest.fixture
def shop(tmp_path, make_database_url) -> Flask:
    """The PROD back office on two seeded SQLite databases, CSRF switched on as in production."""
    app = seeded_app(tmp_path, make_database_url("sqlite"), make_database_url("sqlite"))
    assert app.config.get("WTF_CSRF_ENABLED", True)
    yield app
    for env in environments(app):
        env.engine.dispose()


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def log_in(client, email: str, password: str):
    """Through the real login form: GET it, take its CSRF token, POST it."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def urls(app: Flask, endpoints) -> list[str]:
    with app.test_request_context():
        return [url_for(endpoint) for endpoint in endpoints]


def list_endpoints() -> list[str]:
    return [f"{endpoint}.index_view" for _, _, _, endpoint, _ in VIEWS]


def dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table (the shop's and envsync's), in primary-key order."""
    with engine.connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]
                for table in db.metadata.sorted_tables}


def file_hashes(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def rows_by_key(engine: sa.Engine, table_name: str) -> dict:
    table = db.metadata.tables[table_name]
    names = [column.name for column in table.primary_key.columns]
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.select(table))]
    return {(row[names[0]] if len(names) == 1 else tuple(row[n] for n in names)): row for row in rows}


# --- demo data ------------------------------------------------------------------------------

def test_demo_data_reset_is_repeatable(tmp_path, make_database_url, db_kind):
    app = create_app(shop_config(tmp_path, make_database_url(db_kind), make_database_url(db_kind)))
    prod, test = environments(app)
    runner = app.test_cli_runner()

    first = runner.invoke(args=["demo-data", "--reset"])
    assert first.exit_code == 0, first.output
    snapshot = [(dump(env.engine), file_hashes(env.media_root)) for env in (prod, test)]
    second = runner.invoke(args=["demo-data", "--reset"])
    assert second.exit_code == 0, second.output

    assert [(dump(env.engine), file_hashes(env.media_root)) for env in (prod, test)] == snapshot
    assert len(snapshot[0][0]["products"]) == 200 and len(snapshot[0][0]["cms_pages"]) >= 30
    assert "admin@example.com / admin" in second.output and str(prod.media_root) in second.output
    for env in (prod, test):
        env.engine.dispose()


def test_demo_data_refuses_to_overwrite_without_reset(tmp_path, make_database_url):
    app = seeded_app(tmp_path, make_database_url("sqlite"), make_database_url("sqlite"))
    prod, _ = environments(app)
    before = dump(prod.engine)

    result = app.test_cli_runner().invoke(args=["demo-data"])

    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1 and "--reset" in result.output
    assert dump(prod.engine) == before


def test_never_synchronized_tables_exist_in_both_environments(tmp_path, make_database_url, db_kind):
    app = seeded_app(tmp_path, make_database_url(db_kind), make_database_url(db_kind))
    for env in environments(app):
        names = set(sa.inspect(env.engine).get_table_names())
        assert set(NEVER_SYNCHRONIZED_TABLES) <= names
        assert {"envsync_comparisons", "envsync_baseline"} <= names  # the plugin's own, created empty
        with env.engine.connect() as conn:
            for name in NEVER_SYNCHRONIZED_TABLES:
                assert conn.execute(sa.select(sa.func.count()).select_from(db.metadata.tables[name])).scalar() > 0
        env.engine.dispose()


def test_test_differs_from_prod_exactly_as_documented(tmp_path, make_database_url, db_kind):
    app = seeded_app(tmp_path, make_database_url(db_kind), make_database_url(db_kind))
    prod, test = environments(app)

    found = {}
    for table in db.metadata.sorted_tables:
        p, t = rows_by_key(prod.engine, table.name), rows_by_key(test.engine, table.name)
        only_test, only_prod = set(t) - set(p), set(p) - set(t)
        changed = {key: sorted(c for c in p[key] if p[key][c] != t[key][c]) for key in set(p) & set(t) if p[key] != t[key]}
        if only_test or only_prod or changed:
            found[table.name] = (only_test, only_prod, changed)

    pages_p, pages_t = rows_by_key(prod.engine, "cms_pages"), rows_by_key(test.engine, "cms_pages")
    winter = next(key for key, row in pages_t.items() if row["slug"] == "winter-campaign-2026")
    spring = next(key for key, row in pages_p.items() if row["slug"] == "spring-sale-2025")
    delivery = next(key for key, row in pages_p.items() if row["slug"] == "delivery")
    collision = next(key for key, row in pages_p.items() if row["slug"] == "store-opening-krakow")
    assert pages_t[winter]["title"] == "Winter campaign 2026"
    assert pages_t[collision]["slug"] == "summer-campaign-2026"  # same id, another page
    winter_banner = next(key for key, row in rows_by_key(test.engine, "gallery_images").items()
                         if row["filename"] == "winter_banner.png")
    assert found == {
        "cms_pages": ({winter}, {spring}, {delivery: ["body"], collision: ["body", "slug", "title"]}),
        "products": ({201}, {150}, {7: ["price"]}),
        "gallery_images": ({winter_banner}, set(), {}),
        "slides": (set(), set(), {1: ["caption"], 2: ["image_id"]}),
        "system_settings": (set(), set(), {"mobile_app.home": ["value"]}),
    }
    assert rows_by_key(test.engine, "products")[7]["price"] - rows_by_key(prod.engine, "products")[7]["price"] == 10

    # The modified mobile-app JSON points at the image that is new on TEST: system config needs the gallery.
    home = rows_by_key(test.engine, "system_settings")["mobile_app.home"]
    assert "mobile_app/winter_banner.png" in mobile_app_images("system_settings", home)

    prod_files, test_files = file_hashes(prod.media_root), file_hashes(test.media_root)
    assert set(test_files) - set(prod_files) == {"mobile_app/winter_banner.png"}
    assert set(prod_files) - set(test_files) == set()
    assert {name for name in prod_files if prod_files[name] != test_files[name]} == {"mobile_app/splash.png"}
    for env in (prod, test):
        env.engine.dispose()


def test_demo_images_are_real_small_pictures():
    prod, _, _ = build_pair()
    assert len(prod.files) >= 30
    for relative, content in prod.files.items():
        assert relative.split("/")[0] in ("mobile_app", "banners", "products", "blog")
        assert 500 < len(content) < 20_000
        Image.open(io.BytesIO(content)).verify()
    # Every image a mobile-app JSON names is a gallery file.
    for row in prod.rows["system_settings"]:
        for image in mobile_app_images("system_settings", row):
            assert image in prod.files


# --- who sees what --------------------------------------------------------------------------

def test_admin_sees_every_page_of_the_back_office(shop):
    client = shop.test_client()
    assert log_in(client, "admin@example.com", "admin").status_code == 302
    for url in urls(shop, ["admin.index", *list_endpoints(), *ENVSYNC_ENDPOINTS]):
        response = client.get(url)
        assert response.status_code == 200, url


def test_editor_sees_content_but_not_synchronization(shop):
    client = shop.test_client()
    log_in(client, "editor@example.com", "editor")
    for url in urls(shop, ["admin.index", *(f"{e}.index_view" for e in CONTENT_ENDPOINTS)]):
        assert client.get(url).status_code == 200, url
    for url in urls(shop, [*ENVSYNC_ENDPOINTS, "users.index_view"]):
        assert client.get(url).status_code == 403, url
    assert "Synchronization" not in client.get("/admin/").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_log_in(shop):
    client = shop.test_client()
    for url in urls(shop, ["admin.index", *list_endpoints(), *ENVSYNC_ENDPOINTS]):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.location.startswith("/login?next=") and url in response.location


def test_login_goes_back_to_the_page_asked_for(shop):
    client = shop.test_client()
    target = client.get("/admin/products/").location
    token = csrf_token(client.get(target).get_data(as_text=True))
    response = client.post(target, data={"email": "admin@example.com", "password": "admin", "csrf_token": token})
    assert response.location == "/admin/products/"


def test_login_without_csrf_token_is_refused(shop):
    client = shop.test_client()
    client.get("/login")
    response = client.post("/login", data={"email": "admin@example.com", "password": "admin"})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_wrong_password_is_refused(shop):
    client = shop.test_client()
    assert log_in(client, "admin@example.com", "nope").status_code == 401
    assert client.get("/admin/").status_code == 302


def test_login_ignores_a_next_that_leaves_the_site(shop):
    client = shop.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=//evil.example/", data={"email": "admin@example.com", "password": "admin",
                                                               "csrf_token": token})
    assert response.location == "/admin/"


def test_logout_needs_a_post_with_csrf_token(shop):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    page = client.get("/admin/").get_data(as_text=True)
    assert client.get("/logout").status_code == 405
    client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize(("current", "badge"), [("PROD", "badge-danger"), ("TEST", "badge-primary")])
def test_every_page_says_which_environment_it_is(tmp_path, make_database_url, current, badge):
    app = seeded_app(tmp_path, make_database_url("sqlite"), make_database_url("sqlite"), current)
    client = app.test_client()
    log_in(client, "admin@example.com", "admin")
    html = client.get("/admin/cms_pages/").get_data(as_text=True)
    assert re.search(rf'class="badge {badge}[^"]*"\s+data-environment="{current}">{current}<', html)
    assert f"Shop back office ({current})" in html


def test_instance_serves_its_own_environment_database(tmp_path, make_database_url):
    app = seeded_app(tmp_path, make_database_url("sqlite"), make_database_url("sqlite"), "TEST")
    client = app.test_client()
    log_in(client, "admin@example.com", "admin")
    assert "Winter campaign 2026" in client.get("/admin/cms_pages/?search=winter").get_data(as_text=True)


def test_configuration_comes_from_flask_prefixed_environment_variables(tmp_path, monkeypatch):
    envs = {name: {"database_url": f"sqlite:///{tmp_path / name}.db", "media_root": str(tmp_path / name)}
            for name in ("PROD", "TEST")}
    monkeypatch.setenv("FLASK_ENVSYNC_ENVIRONMENTS", json.dumps(envs))
    monkeypatch.setenv("FLASK_ENVSYNC_CURRENT_ENVIRONMENT", "TEST")
    monkeypatch.setenv("FLASK_MAIL_PORT", "2525")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == envs["TEST"]["database_url"]
    assert app.config["MAIL_PORT"] == 2525
    assert app.extensions["envsync"].settings.current_environment == "TEST"


def test_default_configuration_keeps_both_environments_in_the_instance_folder(monkeypatch):
    for key in ("FLASK_ENVSYNC_ENVIRONMENTS", "FLASK_ENVSYNC_CURRENT_ENVIRONMENT", "FLASK_SQLALCHEMY_DATABASE_URI"):
        monkeypatch.delenv(key, raising=False)
    app = create_app()
    instance = Path(app.instance_path)
    settings = app.extensions["envsync"].settings
    assert settings.current_environment == "PROD"
    assert settings.environments["TEST"].database_url == f"sqlite:///{instance / 'test.db'}"
    assert settings.environments["PROD"].media_root == (instance / "media" / "prod").resolve()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == settings.environments["PROD"].database_url
    assert (app.config["MAIL_SERVER"], app.config["MAIL_PORT"]) == ("localhost", 8025)


# --- gallery --------------------------------------------------------------------------------

def png(colour: str = "red") -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(out, "PNG")
    out.seek(0)
    return out


def upload(client, filename: str, content: io.BytesIO, folder_id: int = 2):
    token = csrf_token(client.get("/admin/gallery_images/new/").get_data(as_text=True))
    return client.post("/admin/gallery_images/new/", content_type="multipart/form-data",
                       data={"csrf_token": token, "folder": str(folder_id), "upload": (content, filename)})


def test_gallery_upload_writes_into_the_folder_under_the_media_root(shop):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    prod, _ = environments(shop)

    response = upload(client, "autumn_sale.png", png())

    assert response.status_code == 302
    assert (prod.media_root / "banners" / "autumn_sale.png").read_bytes() == png().getvalue()
    assert client.get("/media/banners/autumn_sale.png").data == png().getvalue()
    assert 'src="/media/banners/autumn_sale.png"' in client.get("/admin/gallery_images/").get_data(as_text=True)


# The test client writes the name into the multipart header as given, and the header's quoting turns
# two backslashes into one: the server sees ..\evil.png.
@pytest.mark.parametrize("name", ["../evil.png", "..", "sub/evil.png", "..\\\\evil.png", "evil\x00.png"])
def test_gallery_upload_refuses_names_that_are_not_plain(shop, name):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    prod, _ = environments(shop)
    before = file_hashes(prod.media_root.parent)
    rows = len(rows_by_key(prod.engine, "gallery_images"))

    response = upload(client, name, png())

    assert response.status_code == 200
    assert "Not a plain file name" in response.get_data(as_text=True)
    assert file_hashes(prod.media_root.parent) == before
    assert not (prod.media_root / "evil.png").exists()
    assert len(rows_by_key(prod.engine, "gallery_images")) == rows


def test_gallery_upload_refuses_a_file_that_is_not_an_image(shop):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    response = upload(client, "notes.png", io.BytesIO(b"just text"))
    assert response.status_code == 200 and "not a readable image" in response.get_data(as_text=True)


def test_deleting_a_gallery_image_removes_its_file(shop):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    prod, _ = environments(shop)
    upload(client, "old.png", png())
    image_id = next(k for k, row in rows_by_key(prod.engine, "gallery_images").items() if row["filename"] == "old.png")
    token = csrf_token(client.get("/admin/gallery_images/").get_data(as_text=True))

    response = client.post("/admin/gallery_images/delete/", data={"id": str(image_id), "csrf_token": token})

    assert response.status_code == 302
    assert image_id not in rows_by_key(prod.engine, "gallery_images")
    assert not (prod.media_root / "banners" / "old.png").exists()


def test_media_route_serves_only_files_under_the_media_root(shop):
    client = shop.test_client()
    assert client.get("/media/mobile_app/splash.png").status_code == 302  # signed-in staff only
    log_in(client, "admin@example.com", "admin")
    assert client.get("/media/mobile_app/splash.png").status_code == 200
    for path in ("/media/../media/test/mobile_app/splash.png", "/media/%2e%2e/test/mobile_app/splash.png",
                 "/media/mobile_app/missing.png", "/media/mobile_app"):
        assert client.get(path).status_code == 404, path


def test_slides_show_their_gallery_image(shop):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    html = client.get("/admin/slides/").get_data(as_text=True)
    assert 'src="/media/banners/spring_sale.jpg"' in html


def test_dashboard_counts_the_records_of_every_table(shop):
    client = shop.test_client()
    log_in(client, "admin@example.com", "admin")
    html = client.get("/admin/").get_data(as_text=True)
    assert re.search(r'href="/admin/products/">Products</a>\s*<span[^>]*data-count="200"', html)
