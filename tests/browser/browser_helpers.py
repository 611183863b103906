"""What the browser tests share besides fixtures: signing in and saving screenshots."""

from __future__ import annotations

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def log_in(page, url: str, email: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda u: "/login" not in u)


def screenshot(page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot under docs/screenshots/ (committed, so a reviewer sees every screen)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
