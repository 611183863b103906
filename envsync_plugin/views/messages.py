"""System > Messages: what happened to each synchronization (and failed comparisons), newest first."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, url_for
from flask_admin import expose

from .. import service
from ..errors import EnvSyncError, NotFound
from ..extension import current_envsync
from ..forms import ConfirmForm
from ..models import ComparisonStatus
from .base import EnvSyncView, is_htmx


def in_process() -> bool:
    """Whether something may still change the list: a synchronization scheduled or running, a comparison running."""
    if service.active_synchronization() is not None:
        return True
    return any(c.status in (ComparisonStatus.QUEUED, ComparisonStatus.RUNNING) for c in service.recent_comparisons(5))


def can_revert() -> bool:
    # Revert is being added to the service; the button appears once it exists.
    return hasattr(service, "revert_synchronization")


class MessagesView(EnvSyncView):
    @expose("/")
    def index(self) -> Any:
        polling = in_process()
        context = {"messages": service.list_messages(), "polling": polling,
                   "synchronizations": {s.id: s for s in service.list_synchronizations()}}
        if is_htmx():
            # 286: htmx stops polling once nothing is in process any more.
            return self.render("envsync/partials/messages_list.html", **context), (200 if polling else 286)
        return self.render("envsync/messages.html", **context)

    def _detail_context(self, message_id: int) -> dict[str, Any]:
        try:
            message = service.get_message(message_id)
        except NotFound:
            abort(404)
        synchronization = comparison = None
        if message.synchronization_id is not None:
            synchronization = service.get_synchronization(message.synchronization_id)
            comparison = service.get_comparison(synchronization.comparison_id)
        elif message.comparison_id is not None:
            comparison = service.get_comparison(message.comparison_id)
        labels = {m.key: m.label for m in current_envsync.modules}
        return {"message": message, "synchronization": synchronization, "comparison": comparison,
                "form": ConfirmForm(), "can_revert": can_revert(), "labels": labels}

    @expose("/<int:message_id>")
    def detail(self, message_id: int) -> Any:
        context = self._detail_context(message_id)
        sync = context["synchronization"]
        if is_htmx():
            polling = sync is not None and not sync.status.finished
            return self.render("envsync/partials/message_detail.html", **context), (200 if polling else 286)
        return self.render("envsync/message.html", **context)

    @expose("/<int:message_id>/cancel", methods=("POST",))
    def cancel(self, message_id: int) -> Any:
        """The "to cancel, click HERE" button."""
        message = self._detail_context(message_id)["message"]
        if message.synchronization_id is None:
            abort(404)
        try:
            sync = service.cancel_synchronization(message.synchronization_id, user=self.user())
        except EnvSyncError as exc:
            flash(str(exc), "error")
        else:
            if sync.status.value == "canceled":
                flash(f"Synchronization #{sync.id} is canceled. Nothing was applied.", "success")
            else:
                flash(f"Synchronization #{sync.id} is running: it will stop at its next checkpoint and roll back "
                      "everything it did.", "info")
        return redirect(url_for(".detail", message_id=message_id))

    @expose("/<int:message_id>/revert", methods=("POST",))
    def revert(self, message_id: int) -> Any:
        message = self._detail_context(message_id)["message"]
        if message.synchronization_id is None or not can_revert():
            abort(404)
        try:
            service.revert_synchronization(message.synchronization_id, user=self.user())
        except EnvSyncError as exc:
            flash(str(exc), "error")
        else:
            flash(f"The revert of synchronization #{message.synchronization_id} has started; "
                  "its result will appear in Messages.", "success")
        return redirect(url_for(".detail", message_id=message_id))
