"""The comparison's promises (DESIGN.md, "Semantics (contract)"), on SQLite and PostgreSQL, without Flask."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterable, Mapping

import pytest
import sqlalchemy as sa

from envsync_plugin.engine.baseline import BaselineReader, NoBaseline, SqlBaselineReader, record_baseline
from envsync_plugin.engine.compare import (
    KeyRange,
    compare,
    count_records,
    field_diff,
    referenced_folders,
    split_key_ranges,
)
from envsync_plugin.engine.fingerprint import file_digest, row_fingerprint
from envsync_plugin.engine.schema import read_fingerprints, reflect
from envsync_plugin.engine.types import Change, Mode, RecordRef, encode_key
from envsync_plugin.models import define_tables
from envsync_plugin.modules import ModuleRegistry, SyncModule, SyncTable
from example_host.sync_modules import MODULES

REGISTRY = ModuleRegistry(list(MODULES))
SETTINGS_JSON = json.dumps({"home": {"banner_image": "mobile_app/banner.png"}})


def modules(*keys: str) -> list[SyncModule]:
    """The example shop's modules by key (all if none), with the ones they require, in declaration order."""
    return [REGISTRY[key] for key in REGISTRY.with_required(keys or REGISTRY.keys)]


def run(source, target, *keys: str, mode: Mode = Mode.ALL, picked: Mapping[str, Iterable[str] | None] | None = None,
        baseline: BaselineReader | None = None, with_modules: list[SyncModule] | None = None,
        **options: Any) -> list[Change]:
    """Every change of one comparison ``source`` → ``target`` (all modules unless ``keys``)."""
    chosen = {k: (frozenset(v) if v is not None else None) for k, v in (picked or {}).items()}
    return list(compare(source.env, target.env, with_modules or modules(*keys), mode=mode, picked=chosen,
                        baseline=baseline or NoBaseline(), **options))


def tabs(changes: list[Change]) -> dict[tuple[str, Any], str]:
    """{(table, key value): tab}: what most tests assert on."""
    return {(c.table_name, json.loads(c.key)): c.tab for c in changes}


def one(changes: list[Change], table: str, key: Any) -> Change:
    found = [c for c in changes if c.table_name == table and c.key == encode_key(key)]
    assert len(found) == 1, changes
    return found[0]


def seed(*shops) -> None:
    """The same small shop on every side: two gallery folders with a file each, a slider, a product,
    a CMS page, a mobile-app JSON and a setting that is never synchronized."""
    for shop in shops:
        shop.add("gallery_folders", {"id": 1, "name": "mobile_app"}, {"id": 2, "name": "summer"})
        shop.add("gallery_images", {"id": 1, "folder_id": 1, "filename": "banner.png"},
                 {"id": 2, "folder_id": 2, "filename": "beach.png"})
        shop.file("mobile_app/banner.png", b"banner")
        shop.file("summer/beach.png", b"beach")
        shop.add("sliders", {"id": 1, "name": "Home"})
        shop.add("slides", {"id": 1, "slider_id": 1, "image_id": 1, "position": 1, "caption": "Welcome"})
        shop.add("categories", {"id": 1, "name": "Shoes"})
        shop.add("products", {"id": 1, "sku": "SKU-1", "name": "Runner", "price": Decimal("10.00"), "category_id": 1})
        shop.add("cms_pages", {"id": 1, "slug": "about", "title": "About us", "body": "Hello"})
        shop.add("system_settings", {"key": "mobile_app.home", "value": SETTINGS_JSON},
                 {"key": "shop.name", "value": "Demo"})


@pytest.fixture
def pair(shops):
    prod, test = shops
    seed(prod, test)
    return prod, test


# --- the tabs ----------------------------------------------------------------------------------------

def test_identical_environments_have_no_changes(pair):
    prod, test = pair
    assert run(prod, test) == []
    assert run(test, prod) == []


def test_record_only_in_source_is_new_and_checked_by_default(pair):
    prod, test = pair
    prod.add("cms_pages", {"id": 2, "slug": "summer", "title": "Summer sale", "body": ""})
    change = one(run(prod, test), "cms_pages", 2)
    assert (change.tab, change.action, change.selected_by_default) == ("new", "insert", True)
    assert change.target_fingerprint is None and change.source_fingerprint


def test_record_only_in_target_is_deleted_and_unchecked_by_default(pair):
    prod, test = pair
    test.add("cms_pages", {"id": 2, "slug": "old", "title": "Old page", "body": ""})
    change = one(run(prod, test), "cms_pages", 2)
    assert (change.tab, change.action, change.selected_by_default) == ("deleted", "delete", False)
    assert change.source_fingerprint is None and change.target_fingerprint


def test_changed_record_without_baseline_is_modified(pair):
    prod, test = pair
    prod.update("products", 1, price=Decimal("12.50"))
    change = one(run(prod, test), "products", 1)
    assert (change.tab, change.action, change.selected_by_default) == ("modified", "update", True)
    assert change.source_fingerprint != change.target_fingerprint


def test_ignored_columns_are_not_compared(pair):
    prod, test = pair
    pages = SyncModule("cms_pages", "CMS pages", tables=[SyncTable("cms_pages", identity=("slug",), ignore=("body",))])
    prod.update("cms_pages", 1, body="Edited on PROD")
    assert run(prod, test, with_modules=[pages]) == []
    prod.update("cms_pages", 1, title="About")
    assert tabs(run(prod, test, with_modules=[pages])) == {("cms_pages", 1): "modified"}


def test_only_new_records_mode_excludes_modified_and_deleted(pair):
    prod, test = pair
    prod.add("cms_pages", {"id": 2, "slug": "new", "title": "New", "body": ""})
    prod.update("products", 1, name="Runner 2")
    test.add("categories", {"id": 2, "name": "Hats"})
    assert tabs(run(prod, test)) == {("cms_pages", 2): "new", ("products", 1): "modified", ("categories", 2): "deleted"}
    assert tabs(run(prod, test, mode=Mode.NEW)) == {("cms_pages", 2): "new"}


def test_seed_example_new_page_on_test_and_changed_slider_on_prod_gives_only_the_page(pair):
    prod, test = pair
    test.add("cms_pages", {"id": 2, "slug": "summer", "title": "Summer sale", "body": ""})
    prod.update("slides", 1, image_id=2)  # changed slider graphics on PROD
    changes = run(test, prod, mode=Mode.NEW, picked={"gallery_folders": ["mobile_app", "summer"]})
    assert tabs(changes) == {("cms_pages", 2): "new"}
    assert changes[0].label == "summer — Summer sale"


def test_only_chosen_modules_are_compared(pair):
    prod, test = pair
    prod.add("cms_pages", {"id": 2, "slug": "new", "title": "New", "body": ""})
    prod.update("products", 1, name="Runner 2")
    assert tabs(run(prod, test, "products")) == {("products", 1): "modified"}


# --- conflicts --------------------------------------------------------------------------------------

def test_same_key_holding_a_different_record_is_a_conflict(pair):
    prod, test = pair
    prod.add("cms_pages", {"id": 7, "slug": "winter", "title": "Winter", "body": ""})
    test.add("cms_pages", {"id": 7, "slug": "summer", "title": "Summer", "body": ""})
    for mode in (Mode.ALL, Mode.NEW):
        change = one(run(prod, test, mode=mode), "cms_pages", 7)
        assert (change.tab, change.action, change.selected_by_default) == ("conflict", "update", False)
        assert change.reason == "A different CMS page (slug 'summer' on TEST, slug 'winter' on PROD) has the same ID 7."


def test_same_record_under_different_keys_is_a_conflict(pair):
    prod, test = pair
    prod.add("cms_pages", {"id": 8, "slug": "summer", "title": "Summer", "body": ""})
    test.add("cms_pages", {"id": 9, "slug": "summer", "title": "Summer", "body": ""})
    changes = run(prod, test)
    new = one(changes, "cms_pages", 8)
    assert (new.tab, new.action) == ("conflict", "insert")
    assert new.reason == "The same CMS page (slug 'summer') already exists on TEST under another ID (9)."
    assert one(changes, "cms_pages", 9).tab == "deleted"


def test_target_changed_since_last_synchronization_is_a_conflict(pair):
    prod, test = pair
    baseline_table = define_tables(sa.MetaData()).baseline
    baseline_table.create(prod.env.engine)
    module = REGISTRY["cms_pages"]
    with prod.env.engine.begin() as conn:  # the page was synchronized as it is now on both sides
        synced = read_fingerprints(conn, reflect(conn, ["cms_pages"]), module, module.tables[0], ["1"],
                                   prod.env.media_root)
        record_baseline(conn, baseline_table, [("cms_pages", "1", synced["1"])])

    def compared() -> Change:
        with prod.env.engine.connect() as conn:
            return one(run(prod, test, "cms_pages", baseline=SqlBaselineReader(conn, baseline_table)), "cms_pages", 1)

    prod.update("cms_pages", 1, title="About PROD")
    assert compared().tab == "modified"  # only the source changed since
    test.update("cms_pages", 1, title="About TEST")
    both = compared()
    assert (both.tab, both.selectable) == ("conflict", True)
    assert both.reason == "It was changed on TEST after the last synchronization; applying it would overwrite that change."


def test_reference_missing_in_target_is_an_unselectable_conflict(pair):
    prod, test = pair
    prod.add("gallery_images", {"id": 3, "folder_id": 2, "filename": "sun.png"})
    prod.file("summer/sun.png", b"sun")
    prod.add("slides", {"id": 2, "slider_id": 1, "image_id": 3, "position": 2, "caption": "Sun"})
    changes = run(prod, test, picked={"gallery_folders": ["mobile_app"]})  # "summer" not picked
    slide = one(changes, "slides", 2)
    assert (slide.tab, slide.selectable, slide.selected_by_default) == ("conflict", False, False)
    assert slide.reason == ("It uses the gallery image 3 (summer/sun.png), which is not on TEST and does not come "
                            "with this comparison (pick its folder too).")
    assert ("gallery_images", 3) not in tabs(changes)


def test_reference_to_a_module_switched_off_is_a_conflict(pair):
    prod, test = pair
    prod.add("gallery_images", {"id": 3, "folder_id": 2, "filename": "sun.png"})
    prod.update("slides", 1, image_id=3)
    slide = one(run(prod, test, "sliders"), "slides", 1)
    assert (slide.tab, slide.selectable) == ("conflict", False)
    assert slide.reason == "It uses the gallery image 3, which is not on TEST and does not come with this comparison."


def test_parent_that_is_itself_new_goes_in_needs(pair):
    prod, test = pair
    prod.add("gallery_images", {"id": 3, "folder_id": 2, "filename": "sun.png"})
    prod.file("summer/sun.png", b"sun")
    prod.add("slides", {"id": 2, "slider_id": 1, "image_id": 3, "position": 2, "caption": "Sun"})
    changes = run(prod, test, picked={"gallery_folders": ["mobile_app", "summer"]})
    slide = one(changes, "slides", 2)
    assert (slide.tab, slide.needs) == ("new", [RecordRef("gallery_images", "3")])
    assert one(changes, "gallery_images", 3).tab == "new"


def test_media_reference_missing_in_target_is_a_conflict(pair):
    prod, test = pair
    prod.add("gallery_images", {"id": 3, "folder_id": 1, "filename": "promo.png"})
    prod.file("mobile_app/promo.png", b"promo")
    prod.update("system_settings", "mobile_app.home", value=json.dumps({"promo_image": "mobile_app/promo.png"}))
    setting = one(run(prod, test, "system_config", picked={"gallery_folders": ["summer"]}),
                  "system_settings", "mobile_app.home")
    assert setting.tab == "conflict"
    assert setting.reason == ("It points at mobile_app/promo.png, which is not on TEST and does not come with this "
                              "comparison from PROD (pick the folder “mobile_app”).")


def test_media_reference_brought_by_this_comparison_goes_in_needs(pair):
    prod, test = pair
    prod.add("gallery_images", {"id": 3, "folder_id": 1, "filename": "promo.png"})
    prod.file("mobile_app/promo.png", b"promo")
    prod.update("system_settings", "mobile_app.home", value=json.dumps({"promo_image": "mobile_app/promo.png"}))
    changes = run(prod, test, "system_config", picked={"gallery_folders": ["mobile_app"]})
    setting = one(changes, "system_settings", "mobile_app.home")
    assert (setting.tab, setting.needs) == ("modified", [RecordRef("gallery_images", "3")])
    assert one(changes, "gallery_images", 3).tab == "new"


def test_deleted_parent_needs_its_children_that_go_too(pair):
    prod, test = pair
    test.add("gallery_images", {"id": 3, "folder_id": 2, "filename": "old.png"})
    test.add("slides", {"id": 2, "slider_id": 1, "image_id": 3, "position": 2, "caption": "Old"})
    changes = run(prod, test)
    image = one(changes, "gallery_images", 3)
    assert (image.tab, image.needs) == ("deleted", [RecordRef("slides", "2")])
    assert one(changes, "slides", 2).tab == "deleted"


def test_deleted_parent_whose_children_stay_is_an_unselectable_conflict(pair):
    prod, test = pair
    test.add("gallery_images", {"id": 3, "folder_id": 2, "filename": "old.png"})
    test.add("slides", {"id": 2, "slider_id": 1, "image_id": 3, "position": 2, "caption": "Old"})
    image = one(run(prod, test, "gallery_folders"), "gallery_images", 3)  # sliders switched off
    assert (image.tab, image.selectable) == ("conflict", False)
    assert image.reason == "1 slide on TEST still uses it and is not deleted by this comparison."


def test_unsafe_file_name_is_an_unselectable_conflict(pair):
    prod, test = pair
    prod.add("gallery_images", {"id": 3, "folder_id": 1, "filename": "../../etc/passwd"})
    image = one(run(prod, test, "gallery_folders"), "gallery_images", 3)
    assert (image.tab, image.selectable, image.selected_by_default) == ("conflict", False, False)
    assert "'../../etc/passwd' is not a plain name" in image.reason
    assert image.reason.startswith("It cannot be synchronized safely: on PROD,")


def test_unsafe_folder_name_is_an_unselectable_conflict(pair):
    prod, test = pair
    prod.add("gallery_folders", {"id": 3, "name": ".."})
    folder = one(run(prod, test, "gallery_folders"), "gallery_folders", 3)
    assert (folder.tab, folder.selectable) == ("conflict", False)
    assert "the folder name '..'" in folder.reason


# --- content: files, text keys, filters -------------------------------------------------------------

def test_image_whose_file_bytes_changed_is_modified(pair):
    prod, test = pair
    prod.file("summer/beach.png", b"a new picture under the same name")
    assert tabs(run(prod, test, "gallery_folders")) == {("gallery_images", 2): "modified"}


def test_image_whose_file_is_missing_in_target_is_modified(pair):
    prod, test = pair
    (test.env.media_root / "summer" / "beach.png").unlink()
    assert tabs(run(prod, test, "gallery_folders")) == {("gallery_images", 2): "modified"}


def test_text_keys_are_merged_in_the_same_order_on_both_sides(pair):
    prod, test = pair
    # Mixed case, punctuation and accents sort differently under a language collation than in byte order.
    keys = ["mobile_app.B", "mobile_app.a", "mobile_app._x", "mobile_app.Z", "mobile_app.é", "mobile_app.e",
            "mobile_app.a-b", "mobile_app.ab", "mobile_app.A"]
    prod.both(test, "system_settings", *({"key": k, "value": "{}"} for k in keys))
    prod.add("system_settings", {"key": "mobile_app.Ab", "value": "{}"})
    prod.update("system_settings", "mobile_app.é", value='{"x": 1}')
    assert tabs(run(prod, test, "system_config")) == {("system_settings", "mobile_app.Ab"): "new",
                                                      ("system_settings", "mobile_app.é"): "modified"}


def test_system_config_compares_only_mobile_app_settings(pair):
    prod, test = pair
    prod.update("system_settings", "shop.name", value="Changed")
    prod.add("system_settings", {"key": "payment.secret", "value": "x"}, {"key": "mobile_app.menu", "value": "{}"})
    assert tabs(run(prod, test, "system_config")) == {("system_settings", "mobile_app.menu"): "new"}


def test_only_picked_gallery_folders_are_compared(pair):
    prod, test = pair
    prod.add("gallery_folders", {"id": 3, "name": "winter"})
    prod.add("gallery_images", {"id": 3, "folder_id": 3, "filename": "snow.png"},
             {"id": 4, "folder_id": 2, "filename": "sun.png"})
    prod.file("summer/beach.png", b"changed")
    picked = tabs(run(prod, test, "gallery_folders", picked={"gallery_folders": ["summer"]}))
    assert picked == {("gallery_images", 4): "new", ("gallery_images", 2): "modified"}
    everything = tabs(run(prod, test, "gallery_folders", picked={"gallery_folders": None}))
    assert set(everything) == {("gallery_folders", 3), ("gallery_images", 3), ("gallery_images", 4),
                               ("gallery_images", 2)}


def test_system_config_forces_gallery_folders_and_preselects_the_folders_its_jsons_use(pair):
    prod, _test = pair
    assert REGISTRY.with_required(["system_config"]) == ["gallery_folders", "system_config"]
    prod.add("system_settings", {"key": "mobile_app.menu",
                                 "value": json.dumps({"items": [{"icon_image": "summer/beach.png"}]})},
             {"key": "other.json", "value": json.dumps({"image": "winter/snow.png"})})
    assert referenced_folders(prod.env, [REGISTRY["system_config"]]) == {"mobile_app", "summer"}


# --- labels, diffs, fingerprints ----------------------------------------------------------------------

def test_labels_say_which_record_it_is(pair):
    prod, test = pair
    prod.add("products", {"id": 2, "sku": "SKU-2", "name": "Walker", "price": Decimal("5"), "category_id": 1})
    prod.add("gallery_images", {"id": 3, "folder_id": 2, "filename": "sun.png"})
    prod.add("slides", {"id": 2, "slider_id": 1, "image_id": 1, "position": 2, "caption": "Sale"})
    prod.add("system_settings", {"key": "mobile_app.menu", "value": "{}"})
    labels = {(c.table_name, c.key): c.label for c in run(prod, test)}
    assert labels == {("products", "2"): "SKU-2 — Walker", ("gallery_images", "3"): "summer/sun.png",
                      ("slides", "2"): "Sale", ("system_settings", '"mobile_app.menu"'): "mobile_app.menu"}


def test_field_diff_shows_each_column_and_both_files(pair):
    prod, test = pair
    prod.update("products", 1, price=Decimal("12.50"))
    diff = field_diff(prod.env, test.env, REGISTRY["products"], "products", "1")
    assert diff.changed_columns == ["price"]
    price = next(f for f in diff.fields if f.column == "price")
    assert (price.source_value, price.target_value) == (Decimal("12.50"), Decimal("10.00"))

    prod.file("summer/beach.png", b"new bytes")
    image = field_diff(prod.env, test.env, REGISTRY["gallery_folders"], "gallery_images", "2")
    assert (image.source_file, image.target_file, image.file_changed) == ("summer/beach.png", "summer/beach.png", True)
    assert image.changed_columns == []


def test_fingerprints_are_row_fingerprint_and_read_fingerprints_agrees(pair):
    prod, test = pair
    prod.file("summer/beach.png", b"new bytes")
    prod.update("products", 1, name="Runner 2")
    changes = {c.table_name: c for c in run(prod, test)}
    row = {"id": 1, "sku": "SKU-1", "name": "Runner 2", "price": Decimal("10.00"), "category_id": 1}
    assert changes["products"].source_fingerprint == row_fingerprint(row, list(row))
    image = {"id": 2, "folder_id": 2, "filename": "beach.png"}
    digest = file_digest(prod.env.media_root / "summer" / "beach.png")
    assert changes["gallery_images"].source_fingerprint == row_fingerprint(image, list(image), digest)
    with prod.env.engine.connect() as conn:
        tables = reflect(conn, ["gallery_images", "gallery_folders"])
        module = REGISTRY["gallery_folders"]
        read = read_fingerprints(conn, tables, module, module.table("gallery_images"), ["2", "99"],
                                 prod.env.media_root)
    assert read == {"2": changes["gallery_images"].source_fingerprint}


# --- progress, ranges, baseline ---------------------------------------------------------------------

def test_progress_reaches_the_counted_total(pair):
    prod, test = pair
    prod.add("products", *({"id": i, "sku": f"S{i}", "name": "p", "price": Decimal("1"), "category_id": 1}
                           for i in range(2, 60)))
    counted = count_records(prod.env, test.env, modules(), picked={})
    seen: dict[str, tuple[int, int]] = {}
    list(compare(prod.env, test.env, modules(), mode=Mode.ALL, picked={}, baseline=NoBaseline(),
                 progress=lambda key, done, total: seen.__setitem__(key, (done, total)), chunk_size=10))
    assert counted["products"] == 2 + 2 + 58
    assert {key: done for key, (done, _total) in seen.items()} == {k: v for k, v in counted.items() if v}
    assert all(done == total for done, total in seen.values())


def test_key_ranges_together_give_the_whole_comparison(pair):
    prod, test = pair
    prod.add("products", *({"id": i, "sku": f"S{i}", "name": "p", "price": Decimal("1"), "category_id": 1}
                           for i in range(2, 200)))
    test.add("products", *({"id": i, "sku": f"S{i}", "name": "p" if i % 7 else "changed", "price": Decimal("1"),
                            "category_id": 1} for i in range(20, 260)))
    settings = [{"key": f"mobile_app.k{i:03d}{'Aé_'[i % 3]}", "value": str(i)} for i in range(90)]
    prod.add("system_settings", *settings[:70])
    test.add("system_settings", *({**s, "value": "x"} if i % 5 == 0 else s for i, s in enumerate(settings[20:])))
    whole = run(prod, test, "products", "system_config", chunk_size=17, sqlite_attach=False)
    assert len(whole) > 100

    pieces: list[Change] = []
    for module, table in (("products", "products"), ("products", "categories"), ("system_config", "system_settings"),
                          ("gallery_folders", "gallery_folders"), ("gallery_folders", "gallery_images")):
        parts = split_key_ranges(prod.env, REGISTRY[module], table, 4)
        if table in ("products", "system_settings"):
            assert len(parts) == 4
        for part in parts:
            pieces += run(prod, test, "products", "system_config", ranges={table: part}, chunk_size=17)
    assert sorted(pieces, key=_order) == sorted(whole, key=_order)


def test_key_range_keeps_only_its_keys(pair):
    prod, test = pair
    prod.add("products", *({"id": i, "sku": f"S{i}", "name": "p", "price": Decimal("1"), "category_id": 1}
                           for i in range(2, 20)))
    changes = run(prod, test, "products", ranges={"products": KeyRange(5, 9)})
    assert sorted(json.loads(c.key) for c in changes) == [5, 6, 7, 8]


def _order(change: Change) -> tuple:
    return (change.table_name, change.key, change.tab, change.reason or "", tuple(change.needs))


@pytest.mark.parametrize("preload", [200_000, 0], ids=["read-whole", "looked-up"])
def test_record_baseline_upserts_and_forgets(shops, monkeypatch, preload):
    import envsync_plugin.engine.baseline as baseline_module

    monkeypatch.setattr(baseline_module, "PRELOAD", preload)
    prod, _test = shops
    table = define_tables(sa.MetaData()).baseline
    table.create(prod.env.engine)
    with prod.env.engine.begin() as conn:
        record_baseline(conn, table, [("products", str(i), "a") for i in range(1200)])
        record_baseline(conn, table, [("products", "1", "b"), ("products", "2", None), ("products", "1", "c")])
    with prod.env.engine.connect() as conn:
        reader = SqlBaselineReader(conn, table)
        assert reader.fingerprints("products", ["0", "1", "2", "1199", "x"]) == {"0": "a", "1": "c", "1199": "a"}
        assert reader.fingerprints("cms_pages", ["0"]) == {}


@pytest.mark.parametrize("join_slice", [50_000, 1], ids=["whole-tables", "sliced-joins"])
def test_sqlite_join_and_python_merge_give_the_same_changes(pair, monkeypatch, join_slice):
    import envsync_plugin.engine.compare as compare_module

    monkeypatch.setattr(compare_module, "JOIN_SLICE", join_slice)  # 1: every key starts a slice
    prod, test = pair
    test.add("cms_pages", {"id": 2, "slug": "old", "title": "Old", "body": ""})
    prod.add("cms_pages", {"id": 3, "slug": "new", "title": "New", "body": ""},
             {"id": 7, "slug": "winter", "title": "Winter", "body": ""})
    test.add("cms_pages", {"id": 7, "slug": "summer", "title": "Summer", "body": ""})
    prod.update("products", 1, price=Decimal("11"))
    prod.file("summer/beach.png", b"new bytes")
    prod.add("system_settings", {"key": "mobile_app.Zeta", "value": "{}"})
    test.add("system_settings", {"key": "mobile_app.alpha", "value": "{}"})
    for mode in (Mode.ALL, Mode.NEW):
        seen: list[int] = []
        joined = run(prod, test, mode=mode, sqlite_attach=True, chunk_size=2,
                     progress=lambda module, done, total, seen=seen: seen.append(done))  # slices are cut
        if join_slice == 1 and prod.env.engine.dialect.name == "sqlite":
            # Whole-table joins report once per table (8 here); sliced ones once per slice.
            assert len(seen) > 2 * len([t for m in modules() for t in m.tables])
        merged = run(prod, test, mode=mode, sqlite_attach=False, chunk_size=2)
        assert sorted(joined, key=_order) == sorted(merged, key=_order)
        assert joined


# Rows are compared in windows only between two PostgreSQL databases.
@pytest.mark.parametrize("db_kind", ["postgresql"])
@pytest.mark.parametrize("hash_fetch", [20_000, 2], ids=["one-window", "many-windows"])
def test_postgresql_windows_and_python_merge_give_the_same_changes(pair, monkeypatch, hash_fetch):
    import envsync_plugin.engine.compare as compare_module

    prod, test = pair
    assert prod.env.engine.dialect.name == "postgresql"
    test.add("cms_pages", {"id": 2, "slug": "old", "title": "Old", "body": ""})
    prod.add("cms_pages", {"id": 3, "slug": "new", "title": "New", "body": ""},
             {"id": 7, "slug": "winter", "title": "Winter", "body": ""})
    test.add("cms_pages", {"id": 7, "slug": "summer", "title": "Summer", "body": ""})
    prod.add("products", *({"id": i, "sku": f"S{i}", "name": "p", "price": Decimal("1"), "category_id": 1}
                           for i in range(2, 40)))
    test.add("products", *({"id": i, "sku": f"S{i}", "name": "p" if i % 3 else "q", "price": Decimal("1.0"),
                            "category_id": 1} for i in range(20, 50)))
    prod.add("system_settings", {"key": "mobile_app.Zeta", "value": "{}"}, {"key": "mobile_app.é", "value": "1"})
    test.add("system_settings", {"key": "mobile_app.alpha", "value": "{}"}, {"key": "mobile_app.é", "value": "2"})
    for mode in (Mode.ALL, Mode.NEW):
        monkeypatch.setattr(compare_module, "HASH_FETCH", hash_fetch)
        windowed = run(prod, test, mode=mode, chunk_size=3)
        monkeypatch.setattr(compare_module, "HASH_FETCH", False)
        merged = run(prod, test, mode=mode, chunk_size=3)
        assert sorted(windowed, key=_order) == sorted(merged, key=_order)
        assert windowed



@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_postgresql_windows_with_values_python_cannot_hash_give_the_same_changes(pair, monkeypatch):
    """A JSONB column is read as dicts, which no set can hold: such windows are merged row by row."""
    import envsync_plugin.engine.compare as compare_module

    prod, test = pair
    for shop, docs in ((prod, [(1, {"a": 1}), (2, {"b": [1, 2]}), (3, {"c": 3}), (5, {"e": 5})]),
                       (test, [(1, {"a": 1}), (2, {"b": [1, 3]}), (4, {"d": 4}), (5, {"e": 5})])):
        with shop.env.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE docs (id integer PRIMARY KEY, body jsonb NOT NULL)")
            for key, body in docs:
                conn.exec_driver_sql("INSERT INTO docs VALUES (%(id)s, %(body)s)", {"id": key, "body": json.dumps(body)})
    docs = SyncModule("docs", "Documents", tables=[SyncTable("docs")])
    monkeypatch.setattr(compare_module, "HASH_FETCH", 2)
    windowed = run(prod, test, with_modules=[docs])
    monkeypatch.setattr(compare_module, "HASH_FETCH", False)
    merged = run(prod, test, with_modules=[docs])
    assert sorted(windowed, key=_order) == sorted(merged, key=_order)
    assert tabs(windowed) == {("docs", 2): "modified", ("docs", 3): "new", ("docs", 4): "deleted"}


@pytest.mark.parametrize("db_kind", ["postgresql"])
def test_postgresql_hashes_see_changes_a_type_or_collation_calls_equal(pair, monkeypatch):
    """The server hashes values, not text, where Python compares them the same way; text (and any other
    type) is hashed as its bytes, so a case-insensitive collation cannot hide a change, and types the
    server cannot hash (json) still compare."""
    import envsync_plugin.engine.compare as compare_module

    prod, test = pair
    columns = ("id integer PRIMARY KEY, title text COLLATE envsync_ci, doc json, tags jsonb, amount numeric, "
               "flag boolean, day date, at timestamptz, blob bytea, uid uuid, ratio float8, span interval, "
               "size envsync_size")
    same = ("'{\"a\": 1}'", "'[1, 2]'", "1.50", "true", "'2026-12-04'", "'2026-12-04 10:00+00'", "'\\x00ff'",
            "'00000000-0000-0000-0000-000000000001'", "0.5", "'1 day'", "'small'")
    rows = {
        "PROD": [(1, "'Shoe'", *same), (2, "'Shoe'", *same), (3, "'Boot'", *same), (4, "'Sock'", *same)],
        "TEST": [(1, "'Shoe'", *same), (2, "'shoe'", *same), (3, "'Boot'", *same[:4], "'2026-12-05'", *same[5:]),
                 (4, "'Sock'", *same[:-1], "'large'")],
    }
    for shop in (prod, test):
        with shop.env.engine.begin() as conn:
            conn.exec_driver_sql("CREATE COLLATION IF NOT EXISTS envsync_ci "
                                 "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
            conn.exec_driver_sql("CREATE TYPE envsync_size AS ENUM ('small', 'large')")  # read through a processor
            conn.exec_driver_sql(f"CREATE TABLE kinds ({columns})")
            for row in rows[shop.env.name]:
                conn.exec_driver_sql(f"INSERT INTO kinds VALUES ({', '.join(map(str, row))})")
    kinds = SyncModule("kinds", "Kinds", tables=[SyncTable("kinds")])
    hashed = run(prod, test, with_modules=[kinds])
    monkeypatch.setattr(compare_module, "HASH_FETCH", False)
    merged = run(prod, test, with_modules=[kinds])
    assert sorted(hashed, key=_order) == sorted(merged, key=_order)
    assert tabs(hashed) == {("kinds", 2): "modified", ("kinds", 3): "modified", ("kinds", 4): "modified"}

TRICKY_DECIMALS = ["0", "-0", "0.0", "-0.000", "0E-5", "-0E+2", "1E+2", "1e2", "100", "0.10", "123.4500", "-123.4500",
                   "-5", "-0.001", "0.000001", "0.0000001", "1.23E-10", "12345678901234567890.123456789",
                   "1234567890123456789012345678", "12345678901234567890123456789", "-99999999999999999999999999999.5",
                   "9" * 40, "1" + "0" * 40, "0." + "0" * 30 + "1", "1E+40", "-1.5E+3", "NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("text", TRICKY_DECIMALS)
def test_decimal_fast_path_gives_the_same_text_as_the_definition(text):
    from envsync_plugin.engine.fingerprint import decimal_text, decimal_text_slow, normalize
    from envsync_plugin.engine.schema import _fast_text, _texts

    value = Decimal(text)
    expected = decimal_text_slow(value)
    assert decimal_text(value) == expected
    assert normalize(value) == expected
    assert _fast_text(value) == expected
    assert _texts([value, value]) == [expected, expected]
