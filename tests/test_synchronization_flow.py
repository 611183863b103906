"""Synchronizations as a user schedules them: all or nothing, run by a real worker, with Messages and e-mail."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import snapshot

from envsync_plugin import InvalidInput, NotAllowed, service

ALL_MODULES = ["cms_pages", "sliders", "gallery_folders", "products", "system_config"]
NEVER_SYNCHRONIZED = ["users", "orders", "reviews", "promotion_codes", "campaigns", "translations", "titles",
                      "payment_types", "delivery_types", "seo_settings", "beauty_advisor_questions",
                      "beauty_advisor_answers"]


def ready_comparison(direction="test-to-prod", mode="all", modules=ALL_MODULES, **picked) -> service.ComparisonInfo:
    info = service.start_comparison(direction, mode, modules, picked or None, user="admin@example.com")
    info = service.wait_for_comparison(info.id, timeout=180)
    assert info.status.value == "ready", info.error
    return info


def synchronize(comparison_id: int, **kwargs) -> service.SynchronizationInfo:
    info = service.schedule_synchronization(comparison_id, user="admin@example.com", **kwargs)
    return service.wait_for_synchronization(info.id, timeout=180)


def row(side, table: str, key) -> dict | None:
    t = sa.Table(table, sa.MetaData(), autoload_with=side.engine)
    with side.engine.connect() as conn:
        found = conn.execute(sa.select(t).where(list(t.primary_key.columns)[0] == key)).mappings().first()
    return dict(found) if found else None


def test_test_to_prod_applies_the_checked_changes_and_says_success(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison()
        info = synchronize(comparison.id)
        assert info.status.value == "success", info.error
        message = service.list_messages()[0]
    assert row(demo.prod, "cms_pages", 42)["title"] == "Winter campaign 2026"  # new
    assert row(demo.prod, "products", 7) == row(demo.test, "products", 7)  # modified
    assert row(demo.prod, "products", 150) is not None  # deleted records are opt-in
    assert row(demo.prod, "cms_pages", 41)["slug"] != row(demo.test, "cms_pages", 41)["slug"]  # conflict unchecked
    assert message.title == "Success: Synchronization process"
    assert "CMS pages: modified records 1, new records 1" in message.body
    mails = demo.mailbox.wait_for(2)
    assert any(mail["Subject"] == "Success: Synchronization process" for mail in mails)
    assert info.summary["modules"]["cms_pages"]["new"] == 1


def test_prod_to_test_refreshes_test(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison("prod-to-test")
        service.select_changes(comparison.id, selected=True)  # every change, deletions and conflicts too
        info = synchronize(comparison.id)
        assert info.status.value == "success", info.error
    for table in ("cms_pages", "products", "slides", "gallery_images"):
        assert snapshot(demo.test, [table])[table] == snapshot(demo.prod, [table])[table]
    assert snapshot(demo.test)["__media__"]["mobile_app/splash.png"] == snapshot(demo.prod)["__media__"][
        "mobile_app/splash.png"]


def test_a_second_comparison_after_a_synchronization_finds_nothing_left(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison("prod-to-test")
        service.select_changes(comparison.id, selected=True)
        assert synchronize(comparison.id).status.value == "success"
        again = ready_comparison("prod-to-test")
    assert again.counts == {"conflict": 0, "new": 0, "modified": 0, "deleted": 0}


def test_the_target_changed_since_the_last_synchronization_is_a_conflict(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison("test-to-prod", modules=["products"])
        assert synchronize(comparison.id).status.value == "success"
        with demo.prod.engine.begin() as conn:  # someone edits PROD
            conn.execute(sa.text("UPDATE products SET name = 'Edited on PROD' WHERE id = 7"))
        with demo.test.engine.begin() as conn:  # and TEST too
            conn.execute(sa.text("UPDATE products SET name = 'Edited on TEST' WHERE id = 7"))
        later = ready_comparison("test-to-prod", modules=["products"])
        change = [c for c in service.all_changes(later.id) if c.key_value == 7][0]
    assert change.tab.value == "conflict" and not change.selected
    assert "PROD" in change.reason


def test_a_test_import_executes_everything_and_saves_nothing(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison()
        service.select_changes(comparison.id, selected=True)
        before = snapshot(demo.prod), snapshot(demo.test)
        info = synchronize(comparison.id, test_import=True)
        message = service.list_messages()[0]
    assert info.status.value == "success", info.error
    assert (snapshot(demo.prod), snapshot(demo.test)) == before
    assert message.title == "Success: Synchronization process (test import)"
    assert "nothing was saved" in message.body


def test_a_test_import_reports_the_constraint_that_would_fail(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison(modules=["cms_pages"])
        with demo.prod.engine.begin() as conn:  # a new PROD page takes the slug the new TEST page brings
            conn.execute(sa.text("INSERT INTO cms_pages (id, slug, title, body) "
                                 "VALUES (900, 'winter-campaign-2026', 'Clash', '')"))
        before = snapshot(demo.prod)
        info = synchronize(comparison.id, test_import=True)
    assert info.status.value == "failure"
    assert "cms_pages" in info.error and "42" in info.error
    assert snapshot(demo.prod) == before


def test_a_unique_failure_ends_as_failure_naming_the_record_with_the_target_untouched(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison(modules=["cms_pages"])
        with demo.prod.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO cms_pages (id, slug, title, body) "
                                 "VALUES (900, 'winter-campaign-2026', 'Clash', '')"))
        before = snapshot(demo.prod)
        info = synchronize(comparison.id)
        message = service.list_messages()[0]
    assert info.status.value == "failure"
    assert "42" in info.error and "Winter campaign 2026" in info.error
    assert snapshot(demo.prod) == before
    assert message.title == "FAILURE: Synchronization process"
    assert "Nothing was applied" in message.body


def test_drift_since_the_comparison_stops_it_and_names_the_record(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison(modules=["products"])
        with demo.prod.engine.begin() as conn:
            conn.execute(sa.text("UPDATE products SET price = 1234 WHERE id = 7"))
        before = snapshot(demo.prod)
        info = synchronize(comparison.id)
    assert info.status.value == "failure"
    assert "products 7" in info.error and "new comparison" in info.error
    assert snapshot(demo.prod) == before


def test_sequences_are_advanced_so_a_normal_insert_works_afterwards(demo, worker):
    with demo.app().app_context():
        info = synchronize(ready_comparison(modules=["cms_pages"]).id)
        assert info.status.value == "success"
    with demo.prod.engine.begin() as conn:  # no explicit id: the database picks the next one
        conn.execute(sa.text("INSERT INTO cms_pages (slug, title, body) VALUES ('after', 'After', '')"))
        new_id = conn.execute(sa.text("SELECT id FROM cms_pages WHERE slug = 'after'")).scalar_one()
    assert new_id > 42


def other_settings(side) -> list:
    with side.engine.connect() as conn:
        return conn.execute(sa.text("SELECT key, value FROM system_settings WHERE key NOT LIKE 'mobile_app.%' "
                                    "ORDER BY key")).all()


@pytest.mark.parametrize("direction", ["test-to-prod", "prod-to-test"])
def test_never_synchronized_tables_stay_byte_identical_and_envsyncs_own_are_not_carried(demo, worker, direction):
    own = ["envsync_comparisons", "envsync_changes", "envsync_synchronizations", "envsync_messages",
           "envsync_baseline"]
    with demo.test.engine.begin() as conn:  # TEST's own settings differ from PROD's: they must stay so
        conn.execute(sa.text("UPDATE system_settings SET value = 'TEST shop' WHERE key = 'shop.name'"))
    before = [snapshot(side, NEVER_SYNCHRONIZED) for side in (demo.prod, demo.test)]
    before_settings = [other_settings(side) for side in (demo.prod, demo.test)]
    before_test_own = snapshot(demo.test, own)
    with demo.app().app_context():
        comparison = ready_comparison(direction)
        service.select_changes(comparison.id, selected=True)
        assert synchronize(comparison.id).status.value == "success"
    after = [snapshot(side, NEVER_SYNCHRONIZED) for side in (demo.prod, demo.test)]
    for old, new in zip(before, after, strict=True):
        assert {k: v for k, v in new.items() if k != "__media__"} == {k: v for k, v in old.items() if k != "__media__"}
    assert [other_settings(side) for side in (demo.prod, demo.test)] == before_settings
    own_after = snapshot(demo.test, own)
    assert {k: v for k, v in own_after.items() if k != "__media__"} == {
        k: v for k, v in before_test_own.items() if k != "__media__"}  # envsync's tables on TEST: untouched
    assert snapshot(demo.prod, ["envsync_synchronizations"])["envsync_synchronizations"]


def test_gallery_files_are_copied_replaced_and_removed(demo, worker):
    new_file = demo.test.media_root / "banners" / "extra.png"
    new_file.write_bytes((demo.test.media_root / "banners").glob("*.png").__next__().read_bytes())
    with demo.test.engine.begin() as conn:
        folder = conn.execute(sa.text("SELECT id FROM gallery_folders WHERE name = 'banners'")).scalar_one()
        conn.execute(sa.text("INSERT INTO gallery_images (id, folder_id, filename) VALUES (500, :f, 'extra.png')"),
                     {"f": folder})
    with demo.app().app_context():
        comparison = ready_comparison("test-to-prod", modules=["gallery_folders"])
        service.select_changes(comparison.id, selected=True)
        assert synchronize(comparison.id).status.value == "success"
    prod_media, test_media = snapshot(demo.prod)["__media__"], snapshot(demo.test)["__media__"]
    assert prod_media["banners/extra.png"] == test_media["banners/extra.png"]  # new: copied
    assert prod_media["mobile_app/splash.png"] == test_media["mobile_app/splash.png"]  # modified: replaced
    assert set(prod_media) == set(test_media)  # deleted: removed
    assert not (demo.prod.media_root / ".envsync-staging").exists() or not any(
        (demo.prod.media_root / ".envsync-staging").iterdir())


def test_a_synchronization_scheduled_for_later_can_be_canceled(demo, worker):
    with demo.app().app_context():
        comparison = ready_comparison(modules=["cms_pages"])
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        info = service.schedule_synchronization(comparison.id, at=later, user="admin@example.com")
        assert info.status.value == "scheduled"
        message = service.list_messages()[0]
        assert message.title == "Synchronization process"
        assert "scheduled for" in message.body
        canceled = service.cancel_synchronization(info.id, user="admin@example.com")
        assert canceled.status.value == "canceled" and canceled.canceled_by == "admin@example.com"
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        from envsync_plugin.extension import current_envsync

        with pytest.raises(NoSuchJobError):
            Job.fetch(service.job_id("synchronization", info.id), connection=current_envsync.redis)
        with pytest.raises(NotAllowed, match="already ended"):
            service.cancel_synchronization(info.id, user=None)
        assert service.list_messages()[0].title == "Canceled: Synchronization process"
    assert row(demo.prod, "cms_pages", 42) is None


def big_change(demo, count: int = 150_000) -> None:
    rows = [{"id": 10_000 + i, "sku": f"BULK-{i}", "name": f"Bulk {i}", "price": 1, "category_id": None}
            for i in range(count)]
    with demo.test.engine.begin() as conn:
        conn.execute(sa.table("products", *(sa.column(c) for c in rows[0])).insert(), rows)


def wait_status(synchronization_id: int, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while service.get_synchronization(synchronization_id).status.value != status:
        assert time.monotonic() < deadline, f"never {status}"
        time.sleep(0.02)


def test_canceling_a_running_synchronization_rolls_it_back(demo, worker):
    big_change(demo)
    with demo.app().app_context():
        comparison = ready_comparison(modules=["products"])
        before = snapshot(demo.prod)
        info = service.schedule_synchronization(comparison.id, user="admin@example.com")
        wait_status(info.id, "running")
        service.cancel_synchronization(info.id, user="admin@example.com")
        info = service.wait_for_synchronization(info.id, timeout=180)
        message = service.list_messages()[0]
    assert info.status.value == "canceled"
    assert snapshot(demo.prod) == before
    assert "rolled back" in message.body


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_worker_leaves_the_target_as_it_was_and_ends_as_failure_on_the_next_start(demo, start_worker):
    big_change(demo)
    first = start_worker()
    with demo.app().app_context():
        comparison = ready_comparison(modules=["products"])
        before = snapshot(demo.prod)
        info = service.schedule_synchronization(comparison.id, user="admin@example.com")
        wait_status(info.id, "running")
        time.sleep(0.5)
        # The work horse runs in a process group of its own (RQ's doing): only the worker's group is
        # killed, as `kill -9` of the worker or the OOM killer would do; the horse must end with it.
        processes = descendants(first.process.pid)
        assert processes, "the worker has no work horse"
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(map(alive, processes)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(alive, processes)), "a process of the killed worker goes on"
        assert service.get_synchronization(info.id).status.value == "running"
        start_worker()
        info = service.wait_for_synchronization(info.id, timeout=120)
    assert info.status.value == "failure"
    assert "worker" in info.error
    assert snapshot(demo.prod) == before


def test_a_scheduled_synchronization_survives_the_loss_of_redis_data(demo, start_worker):
    from envsync_plugin.extension import current_envsync

    first = start_worker()
    with demo.app().app_context():
        comparison = ready_comparison(modules=["cms_pages"])
        os.killpg(first.process.pid, signal.SIGTERM)
        first.process.wait(timeout=60)
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
        info = service.schedule_synchronization(comparison.id, at=at, user="admin@example.com")
        current_envsync.redis.flushdb()  # Redis restarted without its data
        start_worker()
        info = service.wait_for_synchronization(info.id, timeout=120)
        assert info.status.value == "success", info.error
        assert info.started_at >= at - dt.timedelta(seconds=1)
    assert row(demo.prod, "cms_pages", 42) is not None


@pytest.mark.parametrize("redis_kind", ["embedded"])  # a server the test may restart: its own
def test_a_scheduled_synchronization_runs_at_its_time_though_redis_restarted_under_a_running_worker(
        demo, worker):
    from envsync_plugin.queue import embedded_redis_for

    with demo.app().app_context():
        comparison = ready_comparison(modules=["cms_pages"])
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)
        info = service.schedule_synchronization(comparison.id, at=at, user="admin@example.com")
        server = embedded_redis_for(demo.instance)
        assert server.stop()  # its data is kept on disk, as a restarted Redis with persistence has it
        time.sleep(1)
        server.start()
        info = service.wait_for_synchronization(info.id, timeout=120)
        assert info.status.value == "success", info.error
        assert info.started_at >= at - dt.timedelta(seconds=1)
        assert info.started_at <= at + dt.timedelta(seconds=60), "it ran long after its time"
    assert worker.process.poll() is None, worker.output()
    assert row(demo.prod, "cms_pages", 42) is not None


def scheduled_for_later(comparison_id: int | None = None) -> service.SynchronizationInfo:
    """A synchronization of CMS pages scheduled an hour from now (no worker: its comparison runs here)."""
    from envsync_plugin.service.comparisons import run_comparison

    if comparison_id is None:
        comparison_id = service.start_comparison("test-to-prod", "all", ["cms_pages"], user=None).id
        run_comparison(comparison_id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    return service.schedule_synchronization(comparison_id, at=later, user="admin@example.com")


def test_a_scheduled_synchronization_whose_job_ended_without_it_is_queued_again(demo):
    from rq.job import Job, JobStatus

    from envsync_plugin.extension import current_envsync

    with demo.app().app_context():
        info = scheduled_for_later()
        job = Job.fetch(service.job_id("synchronization", info.id), connection=current_envsync.redis)
        job.set_status(JobStatus.FINISHED)  # ended, as a stale job under its id would be
        recovery = service.recover()
        assert recovery.requeued == [info.id]
        job = Job.fetch(service.job_id("synchronization", info.id), connection=current_envsync.redis)
        assert job.get_status() == JobStatus.SCHEDULED
        assert service.get_synchronization(info.id).status.value == "scheduled"


def test_recovery_leaves_a_synchronization_whose_apply_still_runs_to_end_by_itself(demo):
    """A worker starting while an apply of a dead worker's horse still holds its staging folder does
    not call that synchronization failed; once nothing holds it, it does."""
    from envsync_plugin.engine.journal import Staging
    from envsync_plugin.extension import current_envsync

    with demo.app().app_context():
        info = scheduled_for_later()
        t = current_envsync.tables.synchronizations
        with service.connection() as conn:  # running, with no job left in Redis
            conn.execute(t.update().where(t.c.id == info.id).values(status="running"))
            conn.commit()
        current_envsync.redis.delete(f"rq:job:{service.job_id('synchronization', info.id)}")
        staging = Staging(demo.prod.media_root, str(info.id)).open()  # what a running apply holds
        try:
            assert service.recover().failed == []
            assert service.get_synchronization(info.id).status.value == "running"
        finally:
            staging.discard()
        assert service.recover().failed == [info.id]
        assert service.get_synchronization(info.id).status.value == "failure"


def test_apps_sharing_a_redis_server_under_other_queue_names_keep_their_jobs_apart(demo, tmp_path):
    """Two shops on one Redis server (ENVSYNC_QUEUE_NAME tells them apart): each one's synchronization
    #1 is its own job, and cancelling one leaves the other scheduled."""
    from rq.job import Job

    from envsync_plugin.extension import current_envsync

    other = demo.app(ENVSYNC_QUEUE_NAME="other-shop", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/other.db")
    with other.app_context():
        service.init_db()
        theirs = scheduled_for_later()
    with demo.app().app_context():
        ours = scheduled_for_later()
        assert ours.id == theirs.id == 1
        service.cancel_synchronization(ours.id, user="admin@example.com")
    with other.app_context():
        job = Job.fetch(service.job_id("synchronization", theirs.id), connection=current_envsync.redis)
        assert job.get_status().value == "scheduled"
        assert job.args == (theirs.id,)
        assert service.get_synchronization(theirs.id).status.value == "scheduled"


def test_only_one_synchronization_at_a_time(demo):
    with demo.app().app_context():
        # No worker: the first stays scheduled.
        from envsync_plugin.service.comparisons import run_comparison

        comparison = service.start_comparison("test-to-prod", "all", ["cms_pages"], user=None)
        run_comparison(comparison.id)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        first = service.schedule_synchronization(comparison.id, at=later, user="admin@example.com")
        with pytest.raises(NotAllowed, match=f"Synchronization #{first.id} is already scheduled"):
            service.schedule_synchronization(comparison.id, user="editor@example.com")


@pytest.mark.parametrize(("at", "message"), [
    ("2020-01-01T10:00", "is in the past"),
    ("tomorrow", "is not a date and time"),
])
def test_a_bad_schedule_time_is_refused(demo, at, message):
    with demo.app().app_context():
        from envsync_plugin.service.comparisons import run_comparison

        comparison = service.start_comparison("test-to-prod", "all", ["cms_pages"], user=None)
        run_comparison(comparison.id)
        with pytest.raises(InvalidInput, match=message):
            service.schedule_synchronization(comparison.id, at=at, user=None)
        assert service.recent_synchronizations() == []


def test_a_comparison_that_is_not_ready_cannot_be_scheduled(demo):
    with demo.app().app_context():
        comparison = service.start_comparison("test-to-prod", "all", ["cms_pages"], user=None)  # no worker
        with pytest.raises(NotAllowed, match="not ready"):
            service.schedule_synchronization(comparison.id, user=None)


def test_nothing_checked_is_refused(demo):
    with demo.app().app_context():
        from envsync_plugin.service.comparisons import run_comparison

        comparison = service.start_comparison("test-to-prod", "all", ["cms_pages"], user=None)
        run_comparison(comparison.id)
        service.select_changes(comparison.id, selected=False)
        with pytest.raises(InvalidInput, match="No change"):
            service.schedule_synchronization(comparison.id, user=None)


def test_revert_restores_the_target(demo, worker):
    with demo.app().app_context():
        before = snapshot(demo.prod, ["cms_pages", "products", "slides", "gallery_images", "system_settings"])
        media_before = snapshot(demo.prod)["__media__"]
        comparison = ready_comparison()
        service.select_changes(comparison.id, selected=True)
        info = synchronize(comparison.id)
        assert info.status.value == "success"
        service.revert_synchronization(info.id, user="admin@example.com")
        info = service.wait_for_revert(info.id, timeout=120)
        assert info.status.value == "reverted"
        assert service.list_messages()[0].title == "Success: Revert: Synchronization process"
    after = snapshot(demo.prod, ["cms_pages", "products", "slides", "gallery_images", "system_settings"])
    assert after == {**before, "__media__": after["__media__"]}
    assert snapshot(demo.prod)["__media__"] == media_before


def test_revert_is_refused_when_the_target_changed_since(demo, worker):
    with demo.app().app_context():
        info = synchronize(ready_comparison(modules=["cms_pages"]).id)
        with demo.prod.engine.begin() as conn:
            conn.execute(sa.text("UPDATE cms_pages SET title = 'Edited after' WHERE id = 42"))
        before = snapshot(demo.prod)
        service.revert_synchronization(info.id, user=None)
        info = service.wait_for_revert(info.id, timeout=120)
        message = service.list_messages()[0]
    assert info.status.value == "success"
    assert message.title == "FAILURE: Revert: Synchronization process"
    assert snapshot(demo.prod) == before


def test_a_mail_server_that_is_down_does_not_change_the_outcome(demo, start_worker):
    demo.env["FLASK_MAIL_PORT"] = "1"  # nothing listens there
    start_worker()
    with demo.app().app_context():
        info = synchronize(ready_comparison(modules=["cms_pages"]).id)
        assert info.status.value == "success"
        # The outcome is recorded first; the e-mail is tried after it, and its failure noted then.
        deadline = time.monotonic() + 60
        while info.mail_error is None and time.monotonic() < deadline:
            time.sleep(0.1)
            info = service.get_synchronization(info.id)
        message = service.list_messages()[0]
    assert info.status.value == "success"
    assert info.mail_error and "could not be sent" in info.mail_error
    assert "could not be sent" in message.body


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["envsync", *args])


def test_the_command_line_schedules_cancels_lists_and_reverts(demo, worker):
    app = demo.app()
    with app.app_context():
        comparison = ready_comparison(modules=["cms_pages"])
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat()
    scheduled = json.loads(cli(app, "schedule", str(comparison.id), "--at", later, "--json").output)
    assert scheduled["status"] == "scheduled"
    canceled = cli(app, "cancel", str(scheduled["id"]), "--json")
    assert json.loads(canceled.output)["status"] == "canceled"
    result = cli(app, "schedule", str(comparison.id), "--wait", "--json", "--user", "admin@example.com")
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert done["status"] == "success"
    titles = [m["title"] for m in json.loads(cli(app, "messages", "--json").output)]
    assert titles[:2] == ["Success: Synchronization process", "Canceled: Synchronization process"]
    reverted = cli(app, "revert", str(done["id"]), "--wait", "--json")
    assert reverted.exit_code == 0, reverted.output
    assert json.loads(reverted.output)["status"] == "reverted"
    for args, reason in ((["cancel", "999"], "There is no synchronization #999"),
                         (["schedule", str(comparison.id), "--at", "yesterday"], "is not a date and time"),
                         (["revert", str(scheduled["id"])], "only a successful synchronization can be reverted")):
        refused = cli(app, *args)
        assert refused.exit_code != 0 and reason in refused.output
