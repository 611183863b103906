"""Comparisons as a user starts them: validated, run by a real worker, stored, e-mailed, scriptable."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import sqlalchemy as sa

from envsync_plugin import InvalidInput, NotAllowed, service
from envsync_plugin.extension import current_envsync

ALL_MODULES = ["cms_pages", "sliders", "gallery_folders", "products", "system_config"]


def changes_by(comparison_id: int) -> dict[tuple[str, object], service.ChangeInfo]:
    return {(change.table_name, change.key_value): change for change in service.all_changes(comparison_id)}


def test_the_seed_platform_example_gives_only_the_new_page(demo, worker):
    """A new CMS page on TEST, changed slider graphics on PROD; TEST → PROD with only new records."""
    with demo.app().app_context():
        info = service.start_comparison("test-to-prod", "new", ["cms_pages", "sliders"], user="admin@example.com")
        info = service.wait_for_comparison(info.id, timeout=120)
        assert info.status.value == "ready", info.error
        changes = service.all_changes(info.id)
    # The slider graphics changed on PROD are not new: nothing of sliders is carried.
    assert [(c.tab.value, c.table_name, c.key_value) for c in changes if c.tab.value != "conflict"] == [
        ("new", "cms_pages", 42)
    ]
    assert "Winter campaign 2026" in changes[-1].label
    assert [c.key_value for c in changes if c.selected] == [42]
    # The demo also created a different page under one ID on both sides: new on TEST, so it is shown
    # as a conflict (never checked by default) instead of silently overwriting PROD's page.
    assert [(c.tab.value, c.key_value, c.selected) for c in changes if c.tab.value == "conflict"] == [
        ("conflict", 41, False)]


def test_all_records_test_to_prod_sorts_the_demo_differences_into_their_tabs(demo, worker):
    with demo.app().app_context():
        info = service.start_comparison("test-to-prod", "all", ALL_MODULES, user="admin@example.com")
        info = service.wait_for_comparison(info.id, timeout=120)
        assert info.status.value == "ready", info.error
        found = changes_by(info.id)
    assert found[("cms_pages", 42)].tab.value == "new"
    assert found[("products", 201)].tab.value == "new"
    assert found[("products", 7)].tab.value == "modified"
    assert found[("products", 150)].tab.value == "deleted"
    assert not found[("products", 150)].selected  # deleting is opt-in
    collision = found[("cms_pages", 41)]
    assert collision.tab.value == "conflict" and not collision.selected
    assert "41" in collision.reason and "Summer campaign 2026" in collision.label
    assert found[("system_settings", "mobile_app.home")].tab.value == "modified"
    image = [c for (table, _), c in found.items() if table == "gallery_images" and "splash" in c.label]
    assert image and image[0].tab.value == "modified"  # same name, other bytes
    assert not any(table in ("users", "orders", "reviews", "promotion_codes") for table, _ in found)
    assert info.counts == {tab: sum(1 for c in found.values() if c.tab.value == tab)
                           for tab in ("conflict", "new", "modified", "deleted")}


def test_the_initiator_gets_an_email_with_a_link_to_the_review(demo, worker):
    with demo.app().app_context():
        info = service.start_comparison("test-to-prod", "new", ["cms_pages"], user="admin@example.com")
        service.wait_for_comparison(info.id, timeout=120)
    messages = demo.mailbox.wait_for(1)
    assert messages, "no e-mail arrived"
    mail = messages[0]
    assert mail["To"] == "admin@example.com"
    assert mail["From"] == "envsync@shop.example"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert f"/admin/synchronization/comparison/{info.id}" in text
    assert "New records: 1" in text and "TEST → PROD" in text
    assert f"/admin/synchronization/comparison/{info.id}" in html


def record_progress_writes(engine: sa.Engine) -> None:
    """A trigger that keeps, in envsync_test_progress, every (status, done, total) the comparisons
    table holds: what any reader of the page could have seen, however fast the comparison ran."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE envsync_test_progress (status TEXT, done INTEGER, total INTEGER)")
        row = "NEW.status, NEW.progress_done, NEW.progress_total"
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION envsync_test_progress_log() RETURNS trigger AS $$ BEGIN "
                f"INSERT INTO envsync_test_progress VALUES ({row}); RETURN NEW; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER envsync_test_progress_log AFTER UPDATE ON envsync_comparisons "
                                 "FOR EACH ROW EXECUTE FUNCTION envsync_test_progress_log()")
        else:
            conn.exec_driver_sql("CREATE TRIGGER envsync_test_progress_log AFTER UPDATE ON envsync_comparisons "
                                 f"BEGIN INSERT INTO envsync_test_progress VALUES ({row}); END")


def test_progress_is_visible_while_a_comparison_runs(demo, worker):
    """With enough records, records compared / total move in the stored comparison before it is ready."""
    for side in (demo.prod, demo.test):
        # Every tenth product renamed on TEST: changes to find and store all the way through.
        rows = [{"id": 10_000 + i, "sku": f"BULK-{i}", "price": 1, "category_id": None,
                 "name": f"Bulk {i}" + (" (TEST)" if side is demo.test and i % 10 == 0 else "")}
                for i in range(150_000)]
        with side.engine.begin() as conn:
            conn.execute(sa.table("products", *(sa.column(c) for c in rows[0])).insert(), rows)
    record_progress_writes(demo.prod.engine)
    with demo.app().app_context():
        info = service.start_comparison("test-to-prod", "all", ["products"], user=None)
        info = service.wait_for_comparison(info.id, timeout=120)
    assert info.status.value == "ready", info.error
    assert info.progress_done == info.progress_total > 300_000
    with demo.prod.engine.connect() as conn:
        seen = [tuple(row) for row in conn.exec_driver_sql("SELECT status, done, total FROM envsync_test_progress")]
    running = [(done, total) for status, done, total in seen if status == "running" and total]
    assert any(0 < done < total for done, total in running), seen
    assert [done for done, _total in running] == sorted(done for done, _total in running), seen


def test_a_comparison_is_started_only_on_prod(demo):
    app = demo.app(ENVSYNC_CURRENT_ENVIRONMENT="TEST", SQLALCHEMY_DATABASE_URI=demo.test.url)
    with app.app_context():
        with pytest.raises(NotAllowed, match="only from the PROD environment"):
            service.start_comparison("test-to-prod", "all", ["cms_pages"], user=None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sideways", "all", ["cms_pages"]), "Unknown direction 'sideways'"),
        (("test-to-prod", "some", ["cms_pages"]), "Unknown mode 'some'"),
        (("test-to-prod", "all", []), "Choose at least one module"),
        (("test-to-prod", "all", ["orders"]), "Unknown module 'orders'"),
        (("test-to-prod", "all", ["gallery_folders"], {"gallery_folders": ["no_such_folder"]}),
         "'no_such_folder' does not exist on TEST"),
        (("test-to-prod", "all", ["cms_pages"], {"gallery_folders": ["blog"]}), "not among the chosen modules"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_records_nothing(demo, args, message):
    with demo.app().app_context():
        with pytest.raises(InvalidInput, match=message):
            service.start_comparison(*args, user=None)
        assert service.recent_comparisons() == []


def test_system_config_forces_gallery_folders_and_takes_the_folders_its_jsons_use(demo, worker):
    with demo.app().app_context():
        assert service.suggested_items("test-to-prod", ["system_config"]) == {"gallery_folders": ["mobile_app"]}
        info = service.start_comparison("test-to-prod", "all", ["system_config"], user=None)
        assert info.modules == ["gallery_folders", "system_config"]
        assert info.gallery_folders == ["mobile_app"]
        info = service.wait_for_comparison(info.id, timeout=120)
        changes = service.all_changes(info.id)
    tables = {change.table_name for change in changes}
    assert tables <= {"gallery_folders", "gallery_images", "system_settings"}
    assert all(change.key_value.startswith("mobile_app.") for change in changes
               if change.table_name == "system_settings")
    images = [change.label for change in changes if change.table_name == "gallery_images"]
    assert images and all(label.startswith("mobile_app/") for label in images)


def test_only_the_picked_gallery_folders_are_compared(demo, worker):
    with demo.app().app_context():
        info = service.start_comparison("test-to-prod", "all", ["gallery_folders"],
                                        {"gallery_folders": ["banners"]}, user=None)
        info = service.wait_for_comparison(info.id, timeout=120)
        changes = service.all_changes(info.id)
    assert all(not change.label.startswith("mobile_app") for change in changes)


def test_checking_and_unchecking_changes(demo, worker):
    with demo.app().app_context():
        info = service.wait_for_comparison(
            service.start_comparison("test-to-prod", "all", ["products"], user=None).id, timeout=120)
        deleted = [c for c in service.all_changes(info.id) if c.tab.value == "deleted"]
        assert service.select_changes(info.id, change_ids=[deleted[0].id]) == 1
        assert service.get_change(deleted[0].id).selected
        service.select_changes(info.id, selected=False)
        assert service.selection_counts(info.id)["new"]["selected"] == 0
        with pytest.raises(Exception, match="has no change #999999"):
            service.select_changes(info.id, change_ids=[999999])


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["envsync", *args])


def test_the_command_line_compares_shows_and_selects(demo, worker):
    app = demo.app()
    result = cli(app, "compare", "--direction", "test-to-prod", "--new-only", "--module", "cms_pages",
                 "--module", "sliders", "--wait", "--json", "--user", "admin@example.com")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["status"] == "ready" and data["counts"]["new"] == 1
    shown = json.loads(cli(app, "show", str(data["id"]), "--json").output)
    assert [(c["tab"], c["table"], c["key"], c["selected"]) for c in shown["changes"]] == [
        ("conflict", "cms_pages", 41, False), ("new", "cms_pages", 42, True)]
    assert "41" in shown["changes"][0]["reason"]
    change_id = shown["changes"][1]["id"]
    result = cli(app, "select", str(data["id"]), "--change", str(change_id), "--off", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["selection"]["new"] == {"total": 1, "selected": 0}
    text = cli(app, "show", str(data["id"])).output
    assert "[ ]" in text and "Winter campaign 2026" in text


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["compare", "--direction", "up"], "Unknown direction 'up'"),
        (["compare", "--direction", "test-to-prod", "--module", "nope"], "Unknown module 'nope'"),
        (["show", "12345"], "There is no comparison #12345"),
        (["select", "1"], "exactly one of --all, --none or --change"),
    ],
)
def test_the_command_line_refuses_bad_input_with_a_one_line_reason(demo, args, reason):
    result = cli(demo.app(), *args)
    assert result.exit_code != 0
    assert reason in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1


def test_a_failed_comparison_leaves_a_message_and_a_reason(demo, worker):
    with demo.test.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reviews"))  # unrelated: must not matter
        conn.execute(sa.text("ALTER TABLE cms_pages RENAME TO cms_pages_old"))
    with demo.app().app_context():
        info = service.start_comparison("test-to-prod", "all", ["cms_pages"], user="admin@example.com")
        info = service.wait_for_comparison(info.id, timeout=120)
        messages = service.list_messages()
        assert current_envsync.settings.current_environment == "PROD"
    assert info.status.value == "failed"
    assert "cms_pages" in info.error
    assert messages[0].title == "FAILURE: Comparison of environments"


def comparable(changes) -> list[tuple]:
    return sorted((c.table_name, c.key, c.tab.value, c.action, c.reason, c.selected, c.selectable, str(c.needs))
                  for c in changes)


def _serving(app, count: int) -> None:
    """Wait until ``count`` workers listen to the app's queue."""
    import time

    with app.app_context():
        deadline = time.monotonic() + 60
        while len(service.workers()) < count:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)


def _parts(comparison_id: int) -> list[tuple]:
    p = current_envsync.tables.comparison_parts
    with service.connection() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(p.c.table_name, p.c.low, p.c.high).where(p.c.comparison_id == comparison_id).order_by(p.c.id))]


def test_a_large_comparison_split_across_workers_gives_the_same_changes_as_one_job(demo, start_worker):
    """With parts of 40 rows and two workers, each table of more than 40 rows becomes two key-range
    jobs and one more job compares the other tables; the stored changes are those of a single job, and
    the progress total is the whole comparison's from the start."""
    from envsync_plugin.service.comparisons import run_comparison

    with demo.app().app_context():  # one job, in this process
        whole = service.start_comparison("test-to-prod", "all", ALL_MODULES, user=None)
        run_comparison(whole.id)
        expected = comparable(service.all_changes(whole.id))
        single = service.get_comparison(whole.id)
    demo.env["FLASK_ENVSYNC_COMPARISON_PART_ROWS"] = "40"
    start_worker()
    start_worker()
    app = demo.app()
    _serving(app, 2)
    record_progress_writes(demo.prod.engine)
    with app.app_context():
        split = service.wait_for_comparison(
            service.start_comparison("test-to-prod", "all", ALL_MODULES, user=None).id, timeout=180)
        assert split.status.value == "ready", split.error
        parts = _parts(split.id)
        got = comparable(service.all_changes(split.id))
    split_tables = Counter(name for name, _low, _high in parts if name is not None)
    assert "products" in split_tables and set(split_tables.values()) == {2}  # one key range per worker
    assert parts.count((None, None, None)) == 1  # the other tables
    assert got == expected
    assert split.counts == single.counts
    assert split.progress_done == split.progress_total == single.progress_total
    with demo.prod.engine.connect() as conn:
        totals = [total for status, _done, total in conn.exec_driver_sql(
            "SELECT status, done, total FROM envsync_test_progress") if status == "running"]
    # Every part's share of the total is known before the parts run: the bar's end hardly moves.
    assert totals[0] == split.progress_total
    assert all(abs(total - split.progress_total) <= split.progress_total // 10 for total in totals), [t for t in totals if abs(t - split.progress_total) > split.progress_total // 10]


def test_one_worker_compares_a_large_comparison_as_one_job(demo, worker):
    """Parts only pay off when several workers share them: with one worker, the same comparison is one part."""
    demo.env["FLASK_ENVSYNC_COMPARISON_PART_ROWS"] = "40"
    app = demo.app()
    _serving(app, 1)
    with app.app_context():
        info = service.wait_for_comparison(
            service.start_comparison("test-to-prod", "all", ALL_MODULES, user=None).id, timeout=180)
        assert info.status.value == "ready", info.error
        assert _parts(info.id) == [(None, None, None)]
        assert info.counts["new"] > 0
