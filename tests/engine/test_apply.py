"""The apply engine's promises, on SQLite and PostgreSQL (the ``shop_pair`` fixture), without Flask."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from envsync_plugin.engine import apply as engine
from envsync_plugin.engine.apply import (
    ApplyFailed,
    ApplyItem,
    Canceled,
    DriftDetected,
    ReferenceMissing,
    RevertRefused,
    apply,
    finish_pending_file_moves,
    revert,
)
from envsync_plugin.engine.backup import FolderBackupStore
from envsync_plugin.engine.journal import STAGING_DIR, Staging
from envsync_plugin.engine.schema import read_fingerprints, reflect
from envsync_plugin.engine.types import encode_key
from example_host.models import NEVER_SYNCHRONIZED_TABLES, db, shop_tables
from example_host.sync_modules import MODULES

T = db.metadata.tables
MODULE_OF = {spec.name: module for module in MODULES for spec in module.tables}


# --- helpers ----------------------------------------------------------------------------------------

def insert(side, table: str, *rows: dict) -> None:
    with side.engine.begin() as conn:
        conn.execute(T[table].insert(), list(rows))


def run_sql(side, statement: sa.Executable) -> None:
    with side.engine.begin() as conn:
        conn.execute(statement)


def put_file(side, relative: str, data: bytes) -> None:
    path = side.media_root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fingerprint(side, table: str, key) -> str | None:
    key_json = encode_key(key)
    with side.engine.connect() as conn:
        tables = reflect(conn, [table])
        found = read_fingerprints(conn, tables, MODULE_OF[table], MODULE_OF[table].table(table), [key_json],
                                  side.media_root)
    return found.get(key_json)


def item(source, target, table: str, key, action: str, label: str = "") -> ApplyItem:
    """An item as the comparison would record it: both sides' current fingerprints."""
    return ApplyItem(MODULE_OF[table].key, table, encode_key(key), action,
                     fingerprint(source, table, key), fingerprint(target, table, key), label)


def dump(side) -> dict[str, list[tuple]]:
    """Every shop table's rows in key order: the database's content to compare before and after."""
    with side.engine.connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
                for table in shop_tables()}


def media(side) -> dict[str, str]:
    root: Path = side.media_root
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def rows(side, table: str) -> list[tuple]:
    return dump(side)[table]


@pytest.fixture
def seeded(shop_pair):
    """PROD with a gallery folder, an image, a slider with a slide, categories, products, a page, and
    never-synchronized data; TEST with the same folder, an older image and its own extras."""
    prod, test = shop_pair
    for side in (prod, test):
        insert(side, "gallery_folders", {"id": 1, "name": "summer"})
        insert(side, "categories", {"id": 1, "name": "Shirts"})
        insert(side, "users", {"id": 1, "email": f"admin@{side.name}", "password_hash": "x", "role": "admin"})
        insert(side, "orders", {"id": 1, "number": f"{side.name}-1", "customer_email": "c@x", "total": Decimal("9.90"),
                                "status": "new", "created_at": dt.datetime(2024, 5, 1, 12, 0)})
    insert(prod, "gallery_images", {"id": 1, "folder_id": 1, "filename": "beach.png"})
    insert(test, "gallery_images", {"id": 1, "folder_id": 1, "filename": "beach.png"})
    put_file(prod, "summer/beach.png", b"new beach")
    put_file(test, "summer/beach.png", b"old beach")
    insert(prod, "sliders", {"id": 1, "name": "Home"})
    insert(prod, "slides", {"id": 1, "slider_id": 1, "image_id": 1, "position": 1, "caption": "Sun"})
    insert(prod, "categories", {"id": 2, "name": "Shoes"})
    insert(prod, "products", {"id": 1, "sku": "S-1", "name": "Sandal", "price": Decimal("19.90"), "category_id": 2},
           {"id": 2, "sku": "T-1", "name": "Tee", "price": Decimal("9.90"), "category_id": 1})
    insert(test, "products", {"id": 2, "sku": "T-1", "name": "Old tee", "price": Decimal("8.00"), "category_id": 1})
    insert(prod, "cms_pages", {"id": 1, "slug": "about", "title": "About us", "body": "Hello"})
    # TEST-only records, to be deleted: a category with its product (parent and child).
    insert(test, "categories", {"id": 9, "name": "Gone"})
    insert(test, "products", {"id": 9, "sku": "G-1", "name": "Gone", "price": Decimal("1.00"), "category_id": 9})
    return prod, test


def all_items(prod, test) -> list[ApplyItem]:
    return [
        item(prod, test, "gallery_images", 1, "update", "summer/beach.png"),
        item(prod, test, "sliders", 1, "insert", "Home"),
        item(prod, test, "slides", 1, "insert"),
        item(prod, test, "categories", 2, "insert", "Shoes"),
        item(prod, test, "products", 1, "insert", "S-1 — Sandal"),
        item(prod, test, "products", 2, "update", "T-1 — Tee"),
        item(prod, test, "products", 9, "delete", "G-1 — Gone"),
        item(prod, test, "categories", 9, "delete", "Gone"),
        item(prod, test, "cms_pages", 1, "insert", "about"),
    ]


SYNCED = [spec.name for module in MODULES for spec in module.tables]


# --- the promises -------------------------------------------------------------------------------------

def test_inserts_updates_and_deletes_apply_in_foreign_key_order(seeded):
    prod, test = seeded
    result = apply(prod, test, MODULES, all_items(prod, test))
    after_prod, after_test = dump(prod), dump(test)
    for table in ("sliders", "slides", "categories", "products", "cms_pages", "gallery_images"):
        assert after_test[table] == after_prod[table], table
    assert result.applied["products"] == {"insert": 2, "update": 1, "delete": 2}
    assert result.counts == {"insert": 5, "update": 2, "delete": 2}


def test_drift_on_source_stops_before_anything_is_applied(seeded):
    prod, test = seeded
    items = all_items(prod, test)
    run_sql(prod, T["products"].update().where(T["products"].c.id == 1).values(name="Sandal v2"))
    before = dump(test)
    with pytest.raises(DriftDetected) as caught:
        apply(prod, test, MODULES, items)
    assert [(d.table_name, d.key, d.side) for d in caught.value.drifted] == [("products", "1", "source")]
    assert "S-1 — Sandal" in str(caught.value)
    assert dump(test) == before


def test_drift_on_target_stops_before_anything_is_applied(seeded):
    prod, test = seeded
    items = all_items(prod, test)
    run_sql(test, T["products"].update().where(T["products"].c.id == 2).values(price=Decimal("7.00")))
    put_file(test, "summer/beach.png", b"edited in test")
    before, files = dump(test), media(test)
    with pytest.raises(DriftDetected) as caught:
        apply(prod, test, MODULES, items)
    assert {(d.table_name, d.key, d.side) for d in caught.value.drifted} == {
        ("products", "2", "target"), ("gallery_images", "1", "target")}
    assert dump(test) == before and media(test) == files


def test_missing_reference_stops_before_anything_is_applied(seeded):
    prod, test = seeded
    before = dump(test)
    with pytest.raises(ReferenceMissing) as caught:  # the product's new category "Shoes" is not selected
        apply(prod, test, MODULES, [item(prod, test, "products", 1, "insert", "S-1 — Sandal")])
    (missing,) = caught.value.missing
    assert (missing.record.table_name, missing.record.key) == ("products", "1")
    assert (missing.needs.table_name, missing.needs.key) == ("categories", "2")
    assert dump(test) == before


def test_unique_violation_fails_naming_the_record_and_leaves_the_target_untouched(seeded):
    prod, test = seeded
    insert(test, "products", {"id": 50, "sku": "S-1", "name": "Same SKU", "price": Decimal("1"), "category_id": 1})
    items = all_items(prod, test)
    before, files = dump(test), media(test)
    with pytest.raises(ApplyFailed) as caught:
        apply(prod, test, MODULES, items)
    assert (caught.value.record.table_name, caught.value.record.key) == ("products", "1")
    assert "S-1 — Sandal" in str(caught.value) and "unique" in str(caught.value).lower()
    assert dump(test) == before and media(test) == files
    assert not (test.media_root / STAGING_DIR).exists()


def test_foreign_key_violation_fails_naming_the_record_and_leaves_the_target_untouched(seeded):
    prod, test = seeded
    items = [i for i in all_items(prod, test) if (i.table_name, i.key) != ("products", "9")]  # child stays
    before = dump(test)
    with pytest.raises(ApplyFailed) as caught:
        apply(prod, test, MODULES, items)
    assert (caught.value.record.table_name, caught.value.record.key) == ("categories", "9")
    assert "foreign key" in str(caught.value).lower()
    assert dump(test) == before


def test_sequences_are_advanced_past_inserted_ids(seeded):
    prod, test = seeded
    insert(prod, "cms_pages", *({"id": i, "slug": f"p{i}", "title": "P", "body": ""} for i in range(2, 40)))
    apply(prod, test, MODULES, [item(prod, test, "cms_pages", i, "insert") for i in range(1, 40)])
    with test.engine.begin() as conn:  # a normal insert, the database choosing the id
        new_id = conn.execute(T["cms_pages"].insert().values(slug="fresh", title="F", body="")).inserted_primary_key[0]
    assert new_id == 40


def test_files_are_copied_replaced_and_removed(seeded):
    prod, test = seeded
    insert(prod, "gallery_images", {"id": 2, "folder_id": 1, "filename": "new.png"})
    put_file(prod, "summer/new.png", b"brand new")
    insert(test, "gallery_images", {"id": 3, "folder_id": 1, "filename": "old.png"})
    put_file(test, "summer/old.png", b"to be removed")
    result = apply(prod, test, MODULES, [item(prod, test, "gallery_images", 1, "update"),
                                         item(prod, test, "gallery_images", 2, "insert"),
                                         item(prod, test, "gallery_images", 3, "delete")])
    assert (test.media_root / "summer/beach.png").read_bytes() == b"new beach"
    assert (test.media_root / "summer/new.png").read_bytes() == b"brand new"
    assert not (test.media_root / "summer/old.png").exists()
    assert (result.files_copied, result.files_removed) == (2, 1)
    assert not (test.media_root / STAGING_DIR).exists()
    assert fingerprint(test, "gallery_images", 1) == fingerprint(prod, "gallery_images", 1)


def test_staged_files_are_removed_when_the_apply_fails(seeded, monkeypatch):
    prod, test = seeded
    staged: list[Path] = []
    real_stage = Staging.stage

    def stage(self, source, destination):
        real_stage(self, source, destination)
        staged.append(self.folder)

    monkeypatch.setattr(Staging, "stage", stage)
    monkeypatch.setattr(engine, "_advance_sequences", lambda *a: (_ for _ in ()).throw(RuntimeError("disk full")))
    files = media(test)
    with pytest.raises(RuntimeError):
        apply(prod, test, MODULES, all_items(prod, test))
    assert staged and not staged[0].exists()
    assert media(test) == files


def test_journal_finishes_file_moves_after_a_crash_between_commit_and_move(seeded, monkeypatch):
    prod, test = seeded
    items = all_items(prod, test)

    def crash(self):  # the process dies after the commit: its lock goes with it
        self._lock.close()
        raise SystemExit("killed")

    monkeypatch.setattr(Staging, "complete", crash)
    with pytest.raises(SystemExit):
        apply(prod, test, MODULES, items, sync_id="7")
    assert (test.media_root / "summer/beach.png").read_bytes() == b"old beach"  # committed, not moved yet
    monkeypatch.undo()
    (recovery,) = finish_pending_file_moves(test)
    assert (recovery.sync_id, recovery.committed, recovery.files_moved) == ("7", True, 1)
    assert (test.media_root / "summer/beach.png").read_bytes() == b"new beach"
    assert not (test.media_root / STAGING_DIR).exists()


def test_journal_of_an_uncommitted_apply_is_discarded(seeded, monkeypatch):
    prod, test = seeded
    real_write = Staging.write_journal

    def crash(self, witnesses):  # the process dies after writing the journal, before the commit
        real_write(self, witnesses)
        self._lock.close()
        monkeypatch.setattr(Staging, "discard", lambda self: None)
        raise SystemExit("killed")

    monkeypatch.setattr(Staging, "write_journal", crash)
    before, files = dump(test), media(test)
    with pytest.raises(SystemExit):
        apply(prod, test, MODULES, all_items(prod, test), sync_id="8")
    monkeypatch.undo()
    (recovery,) = finish_pending_file_moves(test)
    assert (recovery.sync_id, recovery.committed, recovery.files_moved) == ("8", False, 0)
    assert dump(test) == before and media(test) == files


def test_recovery_leaves_a_running_apply_alone(seeded):
    _, test = seeded
    staging = Staging(test.media_root, "9").open()
    try:
        assert finish_pending_file_moves(test) == []
        assert staging.folder.exists()
    finally:
        staging.discard()


def test_cancel_rolls_back_everything(seeded):
    prod, test = seeded
    before, files = dump(test), media(test)
    asked = []

    def should_cancel() -> bool:
        asked.append(1)
        return len(asked) > 3  # after a few chunks have been written

    with pytest.raises(Canceled):
        apply(prod, test, MODULES, all_items(prod, test), should_cancel=should_cancel)
    assert dump(test) == before and media(test) == files


def test_test_import_leaves_both_environments_byte_identical(seeded, tmp_path):
    prod, test = seeded
    items = all_items(prod, test)
    before = (dump(prod), media(prod), dump(test), media(test))
    result = apply(prod, test, MODULES, items, test_import=True, backup=FolderBackupStore(tmp_path / "backups"))
    assert (dump(prod), media(prod), dump(test), media(test)) == before
    assert result.test_import and result.backup_id is None and result.baseline == []
    assert sorted((r.table_name, r.key, r.action) for r in result.records) == sorted(
        (i.table_name, i.key, i.action) for i in items)
    assert result.files_copied == 1


def test_test_import_runs_the_constraints(seeded):
    prod, test = seeded
    insert(test, "products", {"id": 50, "sku": "S-1", "name": "Same SKU", "price": Decimal("1"), "category_id": 1})
    with pytest.raises(ApplyFailed):
        apply(prod, test, MODULES, all_items(prod, test), test_import=True)


def test_revert_restores_the_target_as_it_was(seeded, tmp_path):
    prod, test = seeded
    store = FolderBackupStore(tmp_path / "backups")
    before, files = dump(test), media(test)
    result = apply(prod, test, MODULES, all_items(prod, test), sync_id="5", backup=store)
    assert dump(test) != before
    reverted = revert(test, MODULES, store, result.backup_id)
    assert dump(test) == before and media(test) == files
    assert reverted.reverted == {"insert": 5, "update": 2, "delete": 2}
    assert all(row.fingerprint is None for row in reverted.baseline)


def test_revert_is_refused_after_the_target_changed(seeded, tmp_path):
    prod, test = seeded
    store = FolderBackupStore(tmp_path / "backups")
    result = apply(prod, test, MODULES, all_items(prod, test), backup=store)
    run_sql(test, T["cms_pages"].update().where(T["cms_pages"].c.id == 1).values(title="Edited after"))
    after = dump(test)
    with pytest.raises(RevertRefused) as caught:
        revert(test, MODULES, store, result.backup_id)
    assert [(c.table_name, c.key) for c in caught.value.changed] == [("cms_pages", "1")]
    assert "about" in str(caught.value)
    assert dump(test) == after


def test_unsafe_file_name_is_refused_and_nothing_is_written(seeded):
    prod, test = seeded
    insert(prod, "gallery_images", {"id": 4, "folder_id": 1, "filename": "../../escape.png"})
    before = dump(test)
    outside = sorted(p.name for p in test.media_root.parent.iterdir())
    with pytest.raises(ApplyFailed) as caught:
        apply(prod, test, MODULES, [item(prod, test, "gallery_images", 4, "insert")])
    assert caught.value.record.key == "4" and "unsafe" in str(caught.value)
    assert dump(test) == before
    assert sorted(p.name for p in test.media_root.parent.iterdir()) == outside


def test_baseline_holds_the_applied_fingerprints_and_removals(seeded):
    prod, test = seeded
    result = apply(prod, test, MODULES, all_items(prod, test))
    baseline = {(row.table_name, row.key): row.fingerprint for row in result.baseline}
    assert baseline[("products", "9")] is None and baseline[("categories", "9")] is None
    for (table, key), value in baseline.items():
        if value is not None:
            assert value == fingerprint(test, table, int(key)) == fingerprint(prod, table, int(key))


def test_never_synchronized_tables_stay_byte_identical(seeded):
    prod, test = seeded
    for name in NEVER_SYNCHRONIZED_TABLES + ("system_settings",):
        if name == "system_settings":
            insert(test, name, {"key": "shop.name", "value": "Test shop"})
            insert(prod, name, {"key": "shop.name", "value": "Prod shop"},
                   {"key": "mobile_app.home", "value": '{"image": "summer/beach.png"}'})
    before = dump(test)
    items = all_items(prod, test) + [item(prod, test, "system_settings", "mobile_app.home", "insert")]
    assert {i.module for i in items} == {m.key for m in MODULES}
    apply(prod, test, MODULES, items)
    after = dump(test)
    for name in NEVER_SYNCHRONIZED_TABLES:
        assert after[name] == before[name], name
    assert ("shop.name", "Test shop") in after["system_settings"]


def test_items_can_come_straight_from_the_comparison(seeded):
    compare = pytest.importorskip("envsync_plugin.engine.compare")
    from envsync_plugin.engine.baseline import NoBaseline
    from envsync_plugin.engine.types import Mode

    prod, test = seeded
    changes = list(compare.compare(prod, test, MODULES, mode=Mode.ALL, picked={}, baseline=NoBaseline()))
    items = [ApplyItem.from_change(c) for c in changes if c.selectable]
    apply(prod, test, MODULES, items)
    assert list(compare.compare(prod, test, MODULES, mode=Mode.ALL, picked={}, baseline=NoBaseline())) == []

