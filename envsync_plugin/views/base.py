"""What every envsync view shares: the host's permission check, CSRF on every POST and htmx-aware rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import abort, current_app, g, request
from flask_admin import BaseView
from flask_wtf.csrf import CSRFError, validate_csrf

from ..extension import current_envsync

if TYPE_CHECKING:
    from ..extension import EnvSync


def is_htmx() -> bool:
    """True for a request htmx made (and not for a history restore, which wants the full page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def check_csrf() -> None:
    """Refuse (400) a POST without a valid CSRF token, whether or not the host runs CSRFProtect:
    envsync's POSTs start and cancel synchronizations, so they must never be forgeable."""
    if g.get("csrf_valid", False):  # CSRFProtect did it already
        return
    field = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    token = request.form.get(field) or request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token")
    try:
        validate_csrf(token)
    except CSRFError as exc:  # pragma: no cover - validate_csrf raises ValidationError, kept for safety
        abort(400, str(exc))
    except Exception as exc:  # noqa: BLE001 - wtforms' ValidationError: the token is missing or wrong
        abort(400, f"The form is missing its security token or it expired ({exc}); reload the page.")
    g.csrf_valid = True


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

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            check_csrf()
        return None

    def render(self, template: str, **kwargs: Any) -> str:
        kwargs.setdefault("envsync", current_envsync)
        return super().render(template, **kwargs)

    def page_or_partial(self, page: str, partial: str, /, **kwargs: Any) -> str:
        """The partial for htmx, the full page otherwise, so every URL works as a deep link."""
        return self.render(partial if is_htmx() else page, **kwargs)

    def user(self) -> str | None:
        """The signed-in user's e-mail: who messages and e-mails are for."""
        return self.extension.user_email()
