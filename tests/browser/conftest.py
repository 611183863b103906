"""Browser fixtures: the example host served on loopback (PROD, and TEST when asked), a real worker,
Redis and SMTP server (tests/conftest.py), demo data, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import pytest
from browser_helpers import log_in

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def db_kind() -> str:
    # The screens are the same on either database; the engine's tests cover PostgreSQL.
    return "sqlite"


@pytest.fixture
def redis_kind() -> str:
    return "embedded"


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{CHROMIUM} is missing (CI=true: the browser tests are required)", pytrace=False)
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class _Server:
    """A WSGI app on 127.0.0.1 in a thread (werkzeug's threaded server: htmx polls while pages load)."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@dataclass
class Shop:
    """The seeded example host: PROD served at ``url``; ``serve_test()`` serves the TEST instance too."""

    url: str
    host: object
    app: object
    serve_test: Callable[[], str]


@pytest.fixture
def shop(host) -> Iterator[Shop]:
    from example_host.demo_data import seed

    seed(host.prod.engine, host.test.engine, host.prod.media_root, host.test.media_root)
    servers = [_Server(host.app())]

    def serve_test() -> str:
        app = host.app(ENVSYNC_CURRENT_ENVIRONMENT="TEST", SQLALCHEMY_DATABASE_URI=host.test.url)
        servers.append(_Server(app))
        return servers[-1].url

    yield Shop(servers[0].url, host, host.app(), serve_test)
    for server in servers:
        server.stop()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context, shop):
    """A browser tab signed in as the admin of PROD; a page that pops a dialog fails the test."""
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, shop.url, "admin@example.com", "admin")
    yield page
    assert not dialogs, f"a script ran in the page: {dialogs}"
