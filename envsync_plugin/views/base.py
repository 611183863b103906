"""What every envsync view shares: the host's permission check and htmx-aware rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import request
from flask_admin import BaseView

from ..extension import current_envsync

if TYPE_CHECKING:
    from ..extension import EnvSync


def is_htmx() -> bool:
    """True for a request htmx made (and not for a history restore, which wants the full page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


class EnvSyncView(BaseView):
    """A Flask-Admin view whose every route, page or partial, goes through the host's permission check."""

    extra_css: list[str] = []

    def __init__(self, extension: EnvSync, **kwargs: Any) -> None:
        self.extension = extension
        super().__init__(**kwargs)

    def is_accessible(self) -> bool:
        return self.extension.check_permission()

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        return self.extension.on_refused()

    def render(self, template: str, **kwargs: Any) -> str:
        kwargs.setdefault("envsync", current_envsync)
        return super().render(template, **kwargs)

    def page_or_partial(self, page: str, partial: str, **kwargs: Any) -> str:
        """The partial for htmx, the full page otherwise, so every URL works as a deep link."""
        return self.render(partial if is_htmx() else page, **kwargs)
