"""The admin screens through Flask's test client: permissions, CSRF, htmx partials vs full pages,
escaping, and form errors that record nothing. A real SQLite PROD/TEST pair seeded with the demo
content, an embedded Redis (comparisons are queued), and the comparison run in-process."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

XSS = "<script>alert(1)</script>"
HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, make_database_url) -> Iterator[dict]:
    """An example host (PROD) over seeded demo data, with one ready comparison TEST → PROD."""
    from envsync_plugin import service
    from envsync_plugin.environments import create_environment_engine
    from envsync_plugin.queue import embedded_redis_for
    from example_host import create_app
    from example_host.demo_data import seed

    folder = tmp_path_factory.mktemp("views")
    instance = folder / "instance"
    instance.mkdir()
    urls = {name: make_database_url("sqlite") for name in ("PROD", "TEST")}
    media = {name: folder / f"media-{name.lower()}" for name in urls}
    engines = {name: create_environment_engine(url) for name, url in urls.items()}
    seed(engines["PROD"], engines["TEST"], media["PROD"], media["TEST"])
    with engines["TEST"].begin() as conn:  # a page whose title is markup: it must show as text everywhere
        conn.execute(sa.text("INSERT INTO cms_pages (id, slug, title, body) VALUES (900, 'xss', :t, :b)"),
                     {"t": XSS, "b": f"<p>{XSS}</p>"})
    config = {
        "TESTING": True, "SECRET_KEY": "views", "SQLALCHEMY_DATABASE_URI": urls["PROD"],
        "ENVSYNC_ENVIRONMENTS": {n: {"database_url": urls[n], "media_root": str(media[n])} for n in urls},
        "ENVSYNC_CURRENT_ENVIRONMENT": "PROD", "ENVSYNC_TIMEZONE": "Europe/Warsaw",
    }
    old = os.environ.get("EXAMPLE_HOST_INSTANCE_PATH")
    os.environ["EXAMPLE_HOST_INSTANCE_PATH"] = str(instance)
    try:
        app = create_app(config)
        test_app = create_app({**config, "ENVSYNC_CURRENT_ENVIRONMENT": "TEST",
                               "SQLALCHEMY_DATABASE_URI": urls["TEST"]})
    finally:
        if old is None:
            os.environ.pop("EXAMPLE_HOST_INSTANCE_PATH", None)
        else:
            os.environ["EXAMPLE_HOST_INSTANCE_PATH"] = old
    with app.app_context():
        service.init_db()
        info = service.start_comparison("test-to-prod", "all", ["cms_pages", "sliders", "system_config"],
                                        user="admin@example.com")
        service.run_comparison(info.id)
        ready = service.get_comparison(info.id)
        service.add_message(title="FAILURE: Comparison of environments", level="failure", recipient=None,
                            body="An earlier comparison failed.", comparison_id=info.id)
    yield {"app": app, "test_app": test_app, "comparison": ready, "engines": engines, "instance": instance,
           "media": media}
    embedded_redis_for(instance).stop()
    for engine in engines.values():
        engine.dispose()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or \
        re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(app, email: str, password: str):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def admin(site):
    return login(site["app"], "admin@example.com", "admin")


@pytest.fixture
def editor(site):
    return login(site["app"], "editor@example.com", "editor")


def token_of(client, url: str = "/admin/synchronization/") -> str:
    return csrf_token(client.get(url).get_data(as_text=True))


def first_change(site, tab: str = "new", search: str | None = None):
    from envsync_plugin import service

    with site["app"].app_context():
        return service.list_changes(site["comparison"].id, tab=tab, search=search).changes[0]


def message_id(site) -> int:
    from envsync_plugin import service

    with site["app"].app_context():
        messages = service.list_messages()
    return messages[0].id if messages else 1


def get_urls(site) -> list[str]:
    cid = site["comparison"].id
    change = first_change(site)
    return [
        "/admin/synchronization/", "/admin/synchronization/modules?direction=test-to-prod&modules=gallery_folders",
        f"/admin/synchronization/comparison/{cid}", f"/admin/synchronization/comparison/{cid}/progress",
        f"/admin/synchronization/comparison/{cid}/changes?tab=new", f"/admin/synchronization/change/{change.id}",
        "/admin/synchronization/media/TEST/mobile_app/splash.png", "/admin/synchronization/messages/",
        f"/admin/synchronization/messages/{message_id(site)}",
    ]


def post_urls(site) -> list[str]:
    cid = site["comparison"].id
    mid = message_id(site)
    return ["/admin/synchronization/", f"/admin/synchronization/comparison/{cid}/select",
            f"/admin/synchronization/comparison/{cid}/schedule", f"/admin/synchronization/messages/{mid}/cancel",
            f"/admin/synchronization/messages/{mid}/revert"]


# --- who may see what -----------------------------------------------------------------------------

def test_every_page_and_partial_refuses_the_editor(site, editor):
    for url in get_urls(site):
        for headers in ({}, HTMX):
            assert editor.get(url, headers=headers).status_code == 403, url
    token = token_of(editor, "/admin/")
    for url in post_urls(site):
        assert editor.post(url, data={"csrf_token": token}).status_code == 403, url


def test_every_page_and_partial_sends_the_anonymous_visitor_to_log_in(site):
    client = site["app"].test_client()
    for url in get_urls(site):
        response = client.get(url, headers=HTMX)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url


def test_every_post_without_a_csrf_token_is_refused(site, admin):
    for url in post_urls(site):
        assert admin.post(url, data={"direction": "test-to-prod"}).status_code == 400, url
        assert admin.post(url, headers={**HTMX, "X-CSRFToken": "forged"}).status_code == 400, url


def test_every_page_answers_the_admin(site, admin):
    for url in get_urls(site):
        assert admin.get(url).status_code == 200, url


# --- htmx partials and full pages -----------------------------------------------------------------

def test_htmx_gets_the_partial_and_a_plain_request_the_full_page(site, admin):
    cid = site["comparison"].id
    change = first_change(site)
    for url, marker in ((f"/admin/synchronization/comparison/{cid}/changes?tab=new", 'id="envsync-filter"'),
                        (f"/admin/synchronization/change/{change.id}", "envsync-diff-table"),
                        ("/admin/synchronization/messages/", 'id="envsync-messages"'),
                        ("/admin/synchronization/modules?direction=test-to-prod&modules=cms_pages",
                         'id="envsync-modules"')):
        partial = admin.get(url, headers=HTMX).get_data(as_text=True)
        page = admin.get(url).get_data(as_text=True)
        assert marker in partial and marker in page, url
        assert "<html" not in partial and "<html" in page, url


def test_a_history_restore_gets_the_full_page(site, admin):
    cid = site["comparison"].id
    html = admin.get(f"/admin/synchronization/comparison/{cid}/changes?tab=modified",
                     headers={**HTMX, "HX-History-Restore-Request": "true"}).get_data(as_text=True)
    assert "<html" in html


def test_the_progress_poll_stops_with_286_once_the_comparison_has_ended(site, admin):
    response = admin.get(f"/admin/synchronization/comparison/{site['comparison'].id}/progress", headers=HTMX)
    assert response.status_code == 286
    assert "Synchronization direction: TEST → PROD" in response.get_data(as_text=True)


def test_the_review_states_the_direction_and_shows_the_four_tabs_with_counts(site, admin):
    html = admin.get(f"/admin/synchronization/comparison/{site['comparison'].id}").get_data(as_text=True)
    assert "Synchronization direction: TEST → PROD" in html
    for title in ("Conflicts", "New records", "Modified records", "Deleted records"):
        assert title in html
    assert html.count("<h1") == 1  # the master's own title is not repeated


def test_a_checkbox_is_saved_at_once_and_the_summary_follows(site, admin):
    from envsync_plugin import service

    cid = site["comparison"].id
    change = first_change(site, "modified")
    token = token_of(admin)
    response = admin.post(f"/admin/synchronization/comparison/{cid}/select", headers={**HTMX, "X-CSRFToken": token},
                          data={"change_id": change.id})  # unchecked: no "selected"
    assert response.status_code == 200
    assert 'id="envsync-summary"' in response.get_data(as_text=True)
    with site["app"].app_context():
        assert service.get_change(change.id).selected is False
    admin.post(f"/admin/synchronization/comparison/{cid}/select", headers={**HTMX, "X-CSRFToken": token},
               data={"change_id": change.id, "selected": "on"})
    with site["app"].app_context():
        assert service.get_change(change.id).selected is True


def test_select_none_and_all_cover_the_whole_tab_across_pages(site, admin):
    from envsync_plugin import service

    cid = site["comparison"].id
    token = token_of(admin)
    url = f"/admin/synchronization/comparison/{cid}/select"
    admin.post(url, headers={**HTMX, "X-CSRFToken": token}, data={"tab": "new", "selected": "0"})
    with site["app"].app_context():
        assert service.selection_counts(cid)["new"]["selected"] == 0
    html = admin.post(url, headers={**HTMX, "X-CSRFToken": token},
                      data={"tab": "new", "selected": "1"}).get_data(as_text=True)
    with site["app"].app_context():
        counts = service.selection_counts(cid)["new"]
    assert counts["selected"] == counts["total"] > 0
    assert 'hx-swap-oob="true"' in html  # the tab counts and the summary are refreshed too


# --- escaping ------------------------------------------------------------------------------------

def test_a_title_with_markup_is_escaped_in_the_list_the_diff_and_the_messages(site, admin):
    from envsync_plugin import service

    cid = site["comparison"].id
    listing = admin.get(f"/admin/synchronization/comparison/{cid}/changes?tab=new&q=xss",
                        headers=HTMX).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and XSS not in listing
    change = first_change(site, "new", "xss")
    diff = admin.get(f"/admin/synchronization/change/{change.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in diff and XSS not in diff
    with site["app"].app_context():
        message = service.add_message(title=f"FAILURE: {XSS}", level="failure", body=f"Because {XSS}",
                                      recipient=None)
    for url in ("/admin/synchronization/messages/", f"/admin/synchronization/messages/{message}"):
        html = admin.get(url).get_data(as_text=True)
        assert XSS not in html and "&lt;script&gt;" in html, url


# --- forms ---------------------------------------------------------------------------------------

def count_comparisons(site) -> int:
    with site["app"].app_context():
        from envsync_plugin import service

        return len(service.recent_comparisons(1000))


def test_settings_without_a_module_show_the_reason_and_record_nothing(site, admin):
    before = count_comparisons(site)
    response = admin.post("/admin/synchronization/", data={"csrf_token": token_of(admin), "direction": "test-to-prod",
                                                           "mode": "all"})
    assert response.status_code == 400
    assert "Choose at least one module" in response.get_data(as_text=True)
    assert count_comparisons(site) == before


def test_a_folder_that_does_not_exist_is_refused_by_the_service_and_nothing_is_recorded(site, admin):
    before = count_comparisons(site)
    response = admin.post("/admin/synchronization/", data={
        "csrf_token": token_of(admin), "direction": "test-to-prod", "mode": "all", "modules": "gallery_folders",
        "picked-gallery_folders": "no-such-folder"})
    assert response.status_code == 400
    assert "does not exist on TEST" in response.get_data(as_text=True)
    assert count_comparisons(site) == before


def test_a_schedule_in_the_past_shows_the_reason_and_schedules_nothing(site, admin):
    from envsync_plugin import service

    cid = site["comparison"].id
    response = admin.post(f"/admin/synchronization/comparison/{cid}/schedule",
                          data={"csrf_token": token_of(admin), "at": "2020-01-01T10:00"})
    assert response.status_code == 400
    assert "is in the past" in response.get_data(as_text=True)
    with site["app"].app_context():
        assert service.list_synchronizations() == []


def test_system_config_forces_gallery_folders_and_preselects_the_folders_its_jsons_use(site, admin):
    html = admin.get("/admin/synchronization/modules?direction=test-to-prod&modules=system_config",
                     headers=HTMX).get_data(as_text=True)
    assert re.search(r'id="module-gallery_folders"[^>]*checked[^>]*disabled', html)
    assert "Switched on by System config" in html
    assert re.search(r'value="mobile_app" checked', html)


def test_the_test_instance_says_why_it_cannot_start(site):
    client = login(site["test_app"], "admin@example.com", "admin")
    html = client.get("/admin/synchronization/").get_data(as_text=True)
    assert "only from the PROD environment" in html
    assert "Start comparing environments" not in html


def test_gallery_images_are_served_only_from_inside_the_media_root(site, admin):
    assert admin.get("/admin/synchronization/media/TEST/mobile_app/splash.png").status_code == 200
    for bad in ("/admin/synchronization/media/TEST/../instance/x", "/admin/synchronization/media/TEST/%2e%2e/x",
                "/admin/synchronization/media/ELSEWHERE/mobile_app/splash.png",
                "/admin/synchronization/media/TEST/mobile_app/none.png"):
        assert admin.get(bad).status_code == 404, bad
    assert Path(site["media"]["TEST"]).is_dir()
