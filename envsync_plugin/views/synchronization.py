"""System > Synchronization: settings, comparison progress, changes review and schedule.

Every route answers htmx with a partial and a plain request with the full page (deep links, reload,
the back button); every route goes through EnvSyncView's permission and CSRF checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from flask import abort, flash, make_response, redirect, request, send_file, url_for
from flask_admin import expose
from werkzeug.wrappers import Response

from .. import service
from ..engine.files import UnsafePath, resolve_media_path
from ..engine.types import Direction
from ..errors import EnvSyncError, NotFound
from ..extension import current_envsync
from ..forms import MODE_HELP, ScheduleForm, SettingsForm
from ..models import ComparisonStatus, Tab
from .base import EnvSyncView, is_htmx
from .diff import fields_of

PER_PAGE = 25


# --- the settings form's module switches and pickers ---------------------------------------------

@dataclass
class PickerState:
    """The items of one picker module (gallery folders) as the form shows them."""

    key: str
    label: str
    items: list[str]
    picked: list[str]
    suggested: list[str]
    error: str | None = None


@dataclass
class ModulesState:
    direction: Direction
    chosen: list[str]  # what the user switched on
    forced: dict[str, list[str]]  # module forced on -> the modules that force it
    pickers: list[PickerState] = field(default_factory=list)

    @property
    def effective(self) -> list[str]:
        return [*self.chosen, *[key for key in self.forced if key not in self.chosen]]


def modules_state(values: Mapping[str, Any], *, show_pickers: bool = True) -> ModulesState:
    """What the module switches and pickers show for the submitted (or default) settings.

    ``shown_modules`` carries what was on at the previous render, so the folders a module's JSONs
    use are pre-selected once, when that module is switched on, and the user may still untick them.
    """
    registry = current_envsync.modules
    direction = service.parse_direction(values.get("direction") or "test-to-prod")
    chosen = [key for key in values.getlist("modules") if key in registry]
    forced: dict[str, list[str]] = {}
    for key in chosen:
        for required in registry.with_required([key]):
            if required != key and required not in chosen:
                forced.setdefault(required, []).append(registry[key].label)
    state = ModulesState(direction, chosen, forced)
    if not show_pickers:
        return state
    previous = set(values.getlist("shown_modules"))
    # Pre-select what the JSONs point at when a module with such references is switched on (not on
    # every reload, or the user could never untick a suggested folder).
    suggest = any(registry[key].media_references for key in chosen if key not in previous)
    for key in registry.with_required(chosen):
        module = registry[key]
        if module.picker is None:
            continue
        picker = PickerState(key, module.picker.label, [], [], [])
        try:
            picker.items = service.picker_items(direction, key)
            picker.suggested = service.suggested_items(direction, chosen).get(key, [])
        except Exception as exc:  # noqa: BLE001 - the source may be unreachable: say so, the page still works
            picker.error = f"The {module.picker.label} of {direction.source} could not be read: {exc}"
        picked = [name for name in values.getlist(f"picked-{key}") if name in picker.items]
        if suggest:
            picked += [name for name in picker.suggested if name not in picked]
        picker.picked = picked
        state.pickers.append(picker)
    return state


# --- the review -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NeededRecord:
    """A record a change needs in the target, and the change that would bring it (if any)."""

    table_name: str
    key: str
    change: service.ChangeInfo | None


def needed_records(change: service.ChangeInfo) -> list[NeededRecord]:
    registry = current_envsync.modules
    found = []
    for ref in change.needs:
        match = None
        try:
            module = registry.module_of_table(ref["table_name"]).key
            page = service.list_changes(change.comparison_id, module=module, search=ref["key"], per_page=1000)
            match = next((c for c in page.changes if c.table_name == ref["table_name"] and c.key == ref["key"]), None)
        except (KeyError, EnvSyncError):
            pass
        found.append(NeededRecord(ref["table_name"], ref["key"], match))
    return found


def _filters(values: Mapping[str, Any], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The tab, module filter, search and page of the review, defaulting to the first tab with records."""
    tab = values.get("tab")
    if tab not in {t.value for t in Tab}:
        tab = next((t.value for t in Tab if counts[t.value]["total"]), Tab.NEW.value)
    module = values.get("module") or None
    if module not in current_envsync.modules:
        module = None
    try:
        page = max(1, int(values.get("page") or 1))
    except ValueError:
        page = 1
    return {"tab": tab, "module": module, "q": (values.get("q") or "").strip()[:200], "page": page}


class SynchronizationView(EnvSyncView):
    # --- 1. settings ------------------------------------------------------------------------------

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        form = SettingsForm() if request.method == "POST" else SettingsForm(formdata=request.args or None)
        form.modules.choices = [(m.key, m.label) for m in current_envsync.modules]
        refusal = service.start_refusal()
        errors: list[str] = []
        if request.method == "POST":
            if refusal:
                errors.append(refusal)
            elif form.validate():
                state = modules_state(request.form, show_pickers=False)
                picked = {key: request.form.getlist(f"picked-{key}") for key in state.effective}
                try:
                    info = service.start_comparison(form.direction.data, form.mode.data, form.modules.data,
                                                    picked, user=self.user())
                except EnvSyncError as exc:
                    errors.append(str(exc))
                else:
                    flash(f"The comparison of environments ({info.direction.arrow}) has started. You will see the "
                          "changes here when it is ready, and an e-mail will tell you too.", "success")
                    return redirect(url_for(".comparison", comparison_id=info.id))
            for messages in form.errors.values():
                errors.extend(messages)
        values = request.form if request.method == "POST" else request.args
        state = modules_state(values) if refusal is None else None
        body = self.render("envsync/synchronization.html", form=form, errors=errors, state=state, mode_help=MODE_HELP,
                           overview=service.overview())
        return body, (400 if errors else 200)

    @expose("/modules")
    def modules(self) -> Any:
        """The module switches and the source's folders, reloaded when a switch or the direction changes."""
        if service.start_refusal():
            return redirect(url_for(".index"))
        if not is_htmx():
            return self.index()
        form = SettingsForm(formdata=request.args, meta={"csrf": False})
        form.modules.choices = [(m.key, m.label) for m in current_envsync.modules]
        return self.render("envsync/partials/modules.html", form=form, state=modules_state(request.args))

    # --- 2 and 3. progress, review ----------------------------------------------------------------

    def _comparison_context(self, comparison_id: int, values: Mapping[str, Any],
                            change_id: int | None = None, schedule_form: ScheduleForm | None = None,
                            errors: list[str] | None = None) -> dict[str, Any]:
        try:
            info = service.get_comparison(comparison_id)
        except NotFound:
            abort(404)
        context: dict[str, Any] = {"comparison": info, "labels": {m.key: m.label for m in current_envsync.modules},
                                   "tabs": list(Tab), "errors": errors or []}
        if info.status is ComparisonStatus.READY:
            counts = service.selection_counts(comparison_id)
            filters = _filters(values, counts)
            page = service.list_changes(comparison_id, tab=filters["tab"], module=filters["module"],
                                        search=filters["q"] or None, page=filters["page"], per_page=PER_PAGE)
            active = service.active_synchronization()
            context.update(
                counts=counts, filters=filters, page=page,
                needs={c.id: needed_records(c) for c in page.changes if c.needs},
                summary=service.selected_summary(comparison_id),
                schedule_form=schedule_form or ScheduleForm(),
                timezone=str(current_envsync.settings.timezone),
                active=active, locked=bool(active and active.comparison_id == comparison_id),
                diff_view=self._diff_context(change_id) if change_id else None,
            )
        return context

    def _diff_context(self, change_id: int) -> dict[str, Any]:
        try:
            change = service.get_change(change_id)
        except NotFound:
            abort(404)
        info = service.get_comparison(change.comparison_id)
        try:
            diff = service.change_diff(change_id)
        except Exception as exc:  # noqa: BLE001 - a record gone since the comparison: say so in the panel
            return {"change": change, "comparison": info, "diff": None, "error": str(exc), "fields": []}
        return {"change": change, "comparison": info, "diff": diff, "error": None, "fields": fields_of(diff)}

    @expose("/comparison/<int:comparison_id>")
    def comparison(self, comparison_id: int) -> Any:
        context = self._comparison_context(comparison_id, request.args)
        return self.page_or_partial("envsync/comparison.html", "envsync/partials/comparison_body.html", **context)

    @expose("/comparison/<int:comparison_id>/progress")
    def progress(self, comparison_id: int) -> Any:
        """Polled while the comparison runs; 286 stops htmx's polling once it has ended (ready or failed)."""
        context = self._comparison_context(comparison_id, request.args)
        if not is_htmx():
            return self.render("envsync/comparison.html", **context)
        finished = context["comparison"].status in (ComparisonStatus.READY, ComparisonStatus.FAILED)
        return self.render("envsync/partials/comparison_body.html", **context), (286 if finished else 200)

    @expose("/comparison/<int:comparison_id>/changes")
    def changes(self, comparison_id: int) -> Any:
        context = self._comparison_context(comparison_id, request.args)
        if context["comparison"].status is not ComparisonStatus.READY:
            return redirect(url_for(".comparison", comparison_id=comparison_id))
        return self.page_or_partial("envsync/comparison.html", "envsync/partials/changes.html", oob=is_htmx(),
                                    **context)

    @expose("/comparison/<int:comparison_id>/select", methods=("POST",))
    def select(self, comparison_id: int) -> Any:
        """Check or uncheck one change (its checkbox) or every change of the tab and filter (select all / none)."""
        form = request.form
        selected = form.get("selected") in ("on", "1", "true", "y")
        single = form.get("change_id")
        error = None
        try:
            if single:
                service.select_changes(comparison_id, change_ids=[int(single)], selected=selected)
            else:
                service.select_changes(comparison_id, selected=selected, tab=form.get("tab") or None,
                                       module=form.get("module") or None, search=form.get("q") or None)
        except ValueError:
            abort(400)
        except NotFound:
            abort(404)
        except EnvSyncError as exc:
            error = str(exc)
        if not is_htmx():
            if error:
                flash(error, "error")
            args = {k: v for k in ("tab", "module", "q", "page") if (v := form.get(k))}
            return redirect(url_for(".comparison", comparison_id=comparison_id, **args))
        context = self._comparison_context(comparison_id, form, errors=[error] if error else [])
        if single and not error:
            # The checkbox already shows its new state: only the counts and the summary change.
            return self.render("envsync/partials/selection_oob.html", **context)
        return self.render("envsync/partials/changes.html", oob=True, **context)

    @expose("/comparison/<int:comparison_id>/schedule", methods=("POST",))
    def schedule(self, comparison_id: int) -> Any:
        form = ScheduleForm()
        errors: list[str] = []
        if form.validate():
            try:
                sync = service.schedule_synchronization(comparison_id, at=form.at.data,
                                                        test_import=bool(form.test_import.data), user=self.user())
            except NotFound:
                abort(404)
            except EnvSyncError as exc:
                errors.append(str(exc))
            else:
                kind = "Test import" if sync.test_import else "Synchronization"
                flash(f"{kind} #{sync.id} is scheduled for {service.format_datetime(sync.scheduled_at)}.", "success")
                message = next((m for m in service.list_messages() if m.synchronization_id == sync.id), None)
                if message is None:
                    return redirect(url_for("envsync_messages.index"))
                return redirect(url_for("envsync_messages.detail", message_id=message.id))
        for messages in form.errors.values():
            errors.extend(messages)
        context = self._comparison_context(comparison_id, request.form, schedule_form=form, errors=errors)
        return self.render("envsync/comparison.html", **context), 400

    @expose("/change/<int:change_id>")
    def change(self, change_id: int) -> Any:
        """The field-by-field diff of one change."""
        diff = self._diff_context(change_id)
        if is_htmx():
            return self.render("envsync/partials/diff.html", labels={m.key: m.label for m in current_envsync.modules},
                               **diff)
        values = request.args.copy()
        values.setdefault("tab", diff["change"].tab.value)
        context = self._comparison_context(diff["change"].comparison_id, values, change_id=change_id)
        return self.render("envsync/comparison.html", **context)

    @expose("/media/<environment>/<path:relative>")
    def media(self, environment: str, relative: str) -> Response:
        """A gallery file of either environment for the diff, read only from that environment's media root."""
        if environment not in current_envsync.environments.names:
            abort(404)
        try:
            path = resolve_media_path(current_envsync.environments[environment].media_root, relative)
        except UnsafePath:
            abort(404)
        if not path.is_file():
            abort(404)
        response = make_response(send_file(path, max_age=0))
        # A file of the shop's gallery is data: never let the browser sniff it into HTML or script.
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
        return response
