"""The admin screens in a real browser (Chromium) against the example host, a real worker, Redis and
SMTP server: the seed platform's flows, end to end. Every screen is saved under docs/screenshots/."""

from __future__ import annotations

import re

import sqlalchemy as sa
from browser_helpers import SCREENSHOTS, log_in, screenshot
from playwright.sync_api import expect

XSS = "<script>alert(1)</script>"
#: Long enough for a comparison and a synchronization of the demo data on a slow machine.
SLOW = 90_000


def start_comparison(page, url: str, *, direction: str, new_only: bool, modules: list[str]) -> None:
    page.goto(f"{url}/admin/synchronization/")
    # Bootstrap's custom controls lay the label over the real input: force the click through to it.
    page.get_by_label(direction, exact=True).check(force=True)
    page.get_by_label("Synchronize only new records" if new_only else "Synchronize all records").check(force=True)
    for module in modules:
        page.locator("#envsync-modules").get_by_label(module, exact=True).check(force=True)
        expect(page.locator("#envsync-modules").get_by_label(module, exact=True)).to_be_checked()


def wait_for_review(page) -> None:
    expect(page.get_by_text(re.compile(r"Synchronization direction: (TEST → PROD|PROD → TEST)"))).to_be_visible(
        timeout=SLOW)


def open_tab(page, title: str) -> None:
    page.locator("#envsync-tabs").get_by_role("link", name=re.compile(title)).click()
    expect(page.locator("#envsync-tabs .nav-link.active")).to_contain_text(title)


def schedule(page, *, test_import: bool = False, at: str | None = None) -> None:
    if test_import:
        page.get_by_label("Test import — changes will not be saved").check(force=True)
    if at:
        page.get_by_label(re.compile("Date and time")).fill(at)
    page.get_by_role("button", name="Schedule synchronization").click()
    expect(page.locator("#envsync-message")).to_be_visible()


def prod_pages(shop) -> dict[int, str]:
    with shop.host.prod.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, slug FROM cms_pages")).all())


def test_the_seed_platforms_example_end_to_end(page, shop, worker):
    """New CMS page on TEST, changed slider graphics on PROD; TEST → PROD, only new records, CMS pages +
    sliders: only the page is moved; Messages say Success; the page is on PROD; the e-mail arrived."""
    start_comparison(page, shop.url, direction="TEST → PROD", new_only=True, modules=["CMS pages", "Sliders"])
    screenshot(page, "01-settings")
    page.get_by_role("button", name="Start comparing environments").click()
    wait_for_review(page)
    expect(page.locator("#tab-new .envsync-count")).not_to_have_text("0")
    for tab in ("modified", "deleted"):
        expect(page.locator(f"#tab-{tab} .envsync-count")).to_have_text("0")
    open_tab(page, "New records")
    rows = page.locator(".envsync-changes-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Winter campaign 2026")
    expect(page.locator(".envsync-changes-table")).not_to_contain_text("slide")
    expect(page.locator("#envsync-summary")).to_contain_text("CMS pages")
    screenshot(page, "03-review-new-records")
    schedule(page)
    page.goto(f"{shop.url}/admin/synchronization/messages/")
    expect(page.get_by_text("Success: Synchronization process", exact=True)).to_be_visible(timeout=SLOW)
    assert "winter-campaign-2026" in prod_pages(shop).values()
    mails = shop.host.mailbox.wait_for(2)  # comparison ready, then success
    subjects = [str(m["Subject"]) for m in mails]
    assert any("Success: Synchronization process" in s for s in subjects), subjects
    success = next(m for m in mails if "Success" in str(m["Subject"]))
    assert success["To"] == "admin@example.com"
    assert "/admin/synchronization/messages/" in success.get_body(("plain",)).get_content()
    screenshot(page, "10-messages")
    page.get_by_text("Success: Synchronization process", exact=True).click()
    expect(page.locator("#envsync-message")).to_contain_text("What was applied")
    screenshot(page, "11-message-success")


def wait_for_message(page, shop, worker, title: str) -> None:
    """Messages shows ``title`` (the list refreshes itself through htmx while something is in process)."""
    page.goto(f"{shop.url}/admin/synchronization/messages/")
    try:
        expect(page.get_by_text(title, exact=True)).to_be_visible(timeout=SLOW)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker output ---\n{worker.output()[-4000:]}") from None


def simulate_progress(shop, comparison_id: int) -> None:
    """Write a mid-run progress into a queued comparison, as a running one does (for its screenshot)."""
    from envsync_plugin.extension import current_envsync

    with shop.app.app_context():
        t = current_envsync.tables.comparisons
        with current_envsync.db.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == comparison_id).values(
                status="running", progress_done=1200, progress_total=2600,
                progress_detail={"cms_pages": [90, 90], "gallery_folders": [1000, 2000], "system_config": [110, 510]}))


def test_a_conflict_is_overwritten_on_purpose(page, shop, start_worker):
    """All records of CMS pages and System config: the same-ID page collision is a conflict; checking it
    (ignore the conflict and overwrite) puts TEST's page on PROD. Also: progress, each tab, the diffs."""
    start_comparison(page, shop.url, direction="TEST → PROD", new_only=False, modules=["CMS pages", "System config"])
    modules = page.locator("#envsync-modules")
    expect(modules.get_by_label("Gallery folders", exact=True)).to_be_disabled()
    expect(modules.get_by_label("Gallery folders", exact=True)).to_be_checked()
    expect(modules.get_by_label("mobile_app", exact=True)).to_be_checked()
    expect(modules).to_contain_text("Switched on by System config")
    screenshot(page, "01b-settings-system-config")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "17-settings-390px")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Start comparing environments").click()
    expect(page.get_by_text("Waiting for a worker")).to_be_visible()
    comparison_id = int(re.search(r"/comparison/(\d+)", page.url).group(1))
    simulate_progress(shop, comparison_id)
    expect(page.get_by_text("1200 of 2600 records compared")).to_be_visible()  # the poll refreshed it
    screenshot(page, "02-progress")
    worker = start_worker()
    wait_for_review(page)  # the poll ends (286) with the review in its place

    expect(page.locator("#tab-conflict")).to_have_class(re.compile("active"))
    conflict = page.locator(".envsync-changes-table tbody tr", has_text="Summer campaign 2026")
    expect(conflict.locator(".envsync-reason")).not_to_be_empty()
    screenshot(page, "04-review-conflicts")
    conflict.get_by_role("link").click()
    expect(page.locator("#envsync-diff")).to_contain_text("Store opening")
    screenshot(page, "08-diff-conflict")
    conflict.get_by_role("checkbox", name=re.compile("Ignore the conflict and overwrite")).check()
    expect(page.locator("#tab-conflict .envsync-checked")).to_have_text("1 checked")  # saved, counts refreshed

    open_tab(page, "Modified records")
    screenshot(page, "05-review-modified")
    table = page.locator(".envsync-changes-table")
    table.get_by_role("link", name=re.compile("Delivery")).click()
    expect(page.locator(".envsync-lines")).to_be_visible()
    screenshot(page, "07a-diff-long-text")
    table.get_by_role("link", name=re.compile("mobile_app.home")).click()
    expect(page.locator(".envsync-json")).to_contain_text("hero")
    screenshot(page, "07b-diff-json")
    page.get_by_label("Search").fill("splash")
    expect(table.locator("tbody tr")).to_have_count(1)
    table.get_by_role("link").first.click()
    expect(page.locator(".envsync-pictures img")).to_have_count(2)
    assert page.locator(".envsync-pictures img").first.evaluate("img => img.complete && img.naturalWidth > 0")
    screenshot(page, "07c-diff-gallery-image")
    open_tab(page, "Deleted records")
    expect(page.locator(".envsync-changes-table")).to_contain_text("Spring sale 2025")
    screenshot(page, "06-review-deleted")
    page.locator("#envsync-schedule").scroll_into_view_if_needed()
    expect(page.locator("#envsync-summary")).to_contain_text("CMS pages")
    page.locator("#envsync-schedule").screenshot(path=str(SCREENSHOTS / "09-schedule-summary.png"))

    schedule(page)
    wait_for_message(page, shop, worker, "Success: Synchronization process")
    collided = [key for key, slug in prod_pages(shop).items() if slug == "summer-campaign-2026"]
    assert collided and "store-opening-krakow" not in prod_pages(shop).values()


def test_a_test_import_saves_nothing(page, shop, worker):
    start_comparison(page, shop.url, direction="TEST → PROD", new_only=True, modules=["CMS pages"])
    page.get_by_role("button", name="Start comparing environments").click()
    wait_for_review(page)
    before = prod_pages(shop)
    schedule(page, test_import=True)
    wait_for_message(page, shop, worker, "Success: Synchronization process (test import)")
    page.get_by_text("Success: Synchronization process (test import)", exact=True).click()
    expect(page.locator("#envsync-message")).to_contain_text("nothing was saved")
    screenshot(page, "12-message-test-import")
    assert prod_pages(shop) == before


def test_a_synchronization_scheduled_for_later_is_canceled_through_here(page, shop, worker):
    start_comparison(page, shop.url, direction="TEST → PROD", new_only=True, modules=["CMS pages"])
    page.get_by_role("button", name="Start comparing environments").click()
    wait_for_review(page)
    schedule(page, at="2030-01-01T10:00")
    message = page.locator("#envsync-message")
    expect(message).to_contain_text("Synchronization process")
    expect(message).to_contain_text("2030-01-01 10:00")
    expect(message).to_contain_text("To cancel, click HERE")
    screenshot(page, "14-message-scheduled")
    page.get_by_role("button", name="HERE").click()
    expect(message.locator(".badge", has_text="Canceled")).to_be_visible()
    screenshot(page, "15-message-canceled")
    assert "winter-campaign-2026" not in prod_pages(shop).values()


def test_a_change_on_the_target_since_the_comparison_ends_in_failure_with_nothing_applied(page, shop, worker):
    start_comparison(page, shop.url, direction="TEST → PROD", new_only=False, modules=["CMS pages"])
    page.get_by_role("button", name="Start comparing environments").click()
    wait_for_review(page)
    with shop.host.prod.engine.begin() as conn:  # someone edits PROD's Delivery page meanwhile
        conn.execute(sa.text("UPDATE cms_pages SET body = body || ' (edited)' WHERE slug = 'delivery'"))
    before = prod_pages(shop)
    schedule(page)
    wait_for_message(page, shop, worker, "FAILURE: Synchronization process")
    page.get_by_text("FAILURE: Synchronization process", exact=True).click()
    expect(page.locator("#envsync-message")).to_contain_text("Nothing was applied")
    screenshot(page, "13-message-failure")
    assert prod_pages(shop) == before


def test_the_editor_is_refused(context, shop):
    page = context.new_page()
    log_in(page, shop.url, "editor@example.com", "editor")
    for path in ("/admin/synchronization/", "/admin/synchronization/messages/"):
        assert page.goto(f"{shop.url}{path}").status == 403, path


def test_the_test_back_office_says_why_it_cannot_start(context, shop):
    url = shop.serve_test()
    page = context.new_page()
    log_in(page, url, "admin@example.com", "admin")
    page.goto(f"{url}/admin/synchronization/")
    expect(page.locator("#envsync-refusal")).to_contain_text("only from the PROD environment")
    expect(page.get_by_role("button", name="Start comparing environments")).to_have_count(0)
    screenshot(page, "16-test-refusal")


def test_a_title_with_markup_shows_as_text(page, shop, worker):
    with shop.host.test.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO cms_pages (id, slug, title, body) VALUES (900, 'xss', :t, :b)"),
                     {"t": XSS, "b": f"<p>{XSS}</p>"})
    start_comparison(page, shop.url, direction="TEST → PROD", new_only=True, modules=["CMS pages"])
    page.get_by_role("button", name="Start comparing environments").click()
    wait_for_review(page)
    open_tab(page, "New records")
    row = page.locator(".envsync-changes-table tbody tr", has_text=XSS)
    expect(row).to_have_count(1)
    row.get_by_role("link").click()
    expect(page.locator("#envsync-diff-title")).to_contain_text(XSS)
    screenshot(page, "18-xss-title-as-text")
    assert page.evaluate("document.querySelectorAll('#envsync-changes script, #envsync-diff script').length") == 0
