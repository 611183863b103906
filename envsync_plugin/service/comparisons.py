"""Comparisons: start one (validated, recorded, queued), run it in a worker, review and check its changes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from flask import has_request_context, request

from ..engine.compare import (
    KeyRange,
    SqlBaselineReader,
    compare,
    count_tables,
    field_diff,
    referenced_folders,
    split_key_ranges,
)
from ..engine.types import Change, Direction, Mode, decode_key
from ..errors import InvalidInput, NotAllowed, NotFound
from ..extension import current_envsync
from ..models import ComparisonStatus, SynchronizationStatus, Tab
from .base import ComparisonInfo, connection, enqueue, job_id, queue, start_refusal, utcnow, workers

#: How often a running comparison writes its progress (seconds).
PROGRESS_INTERVAL = 0.1
#: Changes are stored in batches of this many rows.
STORE_BATCH = 5000


def parse_direction(value: str | Direction) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise InvalidInput(f"Unknown direction {value!r}: use prod-to-test or test-to-prod.") from None


def parse_mode(value: str | Mode) -> Mode:
    aliases = {"all": Mode.ALL, "new": Mode.NEW, "new-only": Mode.NEW, "only-new": Mode.NEW}
    if isinstance(value, Mode):
        return value
    if value not in aliases:
        raise InvalidInput(f"Unknown mode {value!r}: use all (new, modified and deleted records) or new.")
    return aliases[value]


def parse_modules(keys: Iterable[str]) -> list[str]:
    """The chosen module keys plus those they force on, in declaration order."""
    registry = current_envsync.modules
    keys = [key for key in keys if key]
    if not keys:
        raise InvalidInput(f"Choose at least one module: {', '.join(registry.keys)}.")
    unknown = [key for key in keys if key not in registry]
    if unknown:
        raise InvalidInput(f"Unknown module {unknown[0]!r}: the modules are {', '.join(registry.keys)}.")
    return registry.with_required(keys)


def source_side(direction: Direction):
    return current_envsync.environments[direction.source]


def target_side(direction: Direction):
    return current_envsync.environments[direction.target]


def picker_items(direction: Direction | str, module_key: str) -> list[str]:
    """The names a user can pick for ``module_key`` (the gallery folders), read from the source environment."""
    direction = parse_direction(direction)
    module = current_envsync.modules[module_key]
    if module.picker is None:
        return []
    env = source_side(direction)
    table = sa.Table(module.picker.table, sa.MetaData(), autoload_with=env.engine)
    column = table.c[module.picker.column]
    with env.engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.select(column).order_by(column))]


def suggested_items(direction: Direction | str, module_keys: Iterable[str]) -> dict[str, list[str]]:
    """Items to pre-select per picker module: those the chosen modules' values point at
    (the gallery folders that the mobile-app JSONs use)."""
    direction = parse_direction(direction)
    keys = current_envsync.modules.with_required(module_keys) if module_keys else []
    modules = [current_envsync.modules[key] for key in keys]
    if not any(module.media_references for module in modules):
        return {}
    folders = referenced_folders(source_side(direction), modules)
    return {module.key: sorted(folders) for module in modules if module.picker is not None}


def start_comparison(
    direction: str | Direction,
    mode: str | Mode,
    modules: Sequence[str],
    picked: dict[str, Sequence[str]] | None = None,
    *,
    user: str | None,
) -> ComparisonInfo:
    """Validate, record and queue a comparison; refused on TEST and on any bad input (nothing recorded)."""
    refusal = start_refusal()
    if refusal:
        raise NotAllowed(refusal)
    direction = parse_direction(direction)
    mode = parse_mode(mode)
    keys = parse_modules(modules)
    picked = {key: list(dict.fromkeys(names)) for key, names in (picked or {}).items() if names}
    folders: list[str] | None = None
    for key in picked:
        if key not in keys:
            raise InvalidInput(f"Items were picked for {key!r}, which is not among the chosen modules.")
    for key in keys:
        module = current_envsync.modules[key]
        if module.picker is None:
            continue
        available = set(picker_items(direction, key))
        names = picked.get(key)
        if names is None and key not in modules:
            # Forced on by another module (system config): take what it points at.
            names = suggested_items(direction, modules).get(key, [])
        if names is not None:
            unknown = [name for name in names if name not in available]
            if unknown:
                raise InvalidInput(
                    f"The {module.picker.label[:-1] if module.picker.label.endswith('s') else module.picker.label} "
                    f"{unknown[0]!r} does not exist on {direction.source}."
                )
            folders = sorted(names)
    now = utcnow()
    t = current_envsync.tables.comparisons
    with connection() as conn:
        comparison_id = conn.execute(
            t.insert().values(
                direction=direction.value, mode=mode.value, modules=keys, gallery_folders=folders,
                status=ComparisonStatus.QUEUED.value, progress_done=0, progress_total=0,
                requested_by=user, created_at=now, base_url=_base_url(),
                job_id=None,
            )
        ).inserted_primary_key[0]
        rq_id = job_id("comparison", comparison_id)
        conn.execute(t.update().where(t.c.id == comparison_id).values(job_id=rq_id))
        conn.commit()
    from ..jobs.comparison import run_comparison

    try:
        enqueue(run_comparison, comparison_id, job_id=rq_id)
    except Exception as exc:
        _finish(comparison_id, ComparisonStatus.FAILED, error=f"The comparison could not be queued: {exc}")
        raise NotAllowed(f"The comparison could not be queued (is Redis running?): {exc}") from exc
    return get_comparison(comparison_id)


def _base_url() -> str | None:
    if has_request_context():
        return request.url_root.rstrip("/")
    return None


def get_comparison(comparison_id: int) -> ComparisonInfo:
    t = current_envsync.tables.comparisons
    with connection() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == comparison_id)).first()
    if row is None:
        raise NotFound(f"There is no comparison #{comparison_id}.")
    return ComparisonInfo.from_row(row)


def _finish(comparison_id: int, status: ComparisonStatus, **values: object) -> None:
    t = current_envsync.tables.comparisons
    with connection() as conn:
        conn.execute(t.update().where(t.c.id == comparison_id).values(status=status.value, finished_at=utcnow(),
                                                                        **values))
        conn.commit()


# --- the job's work -------------------------------------------------------------------------------

class _ProgressWriter:
    """Writes one part's records compared / total per module, at most every PROGRESS_INTERVAL seconds,
    and the comparison's sums over all its parts (so parts run by several workers add up). A module
    not reported yet keeps the part's ``estimate`` (what the plan gave it)."""

    def __init__(self, comparison_id: int, part_id: int, estimate: dict[str, list[int]] | None = None) -> None:
        self.comparison_id = comparison_id
        self.part_id = part_id
        self.estimate = dict(estimate or {})
        self.detail: dict[str, list[int]] = {}
        self.last = 0.0

    def __call__(self, module: str, done: int, total: int) -> None:
        known = self.detail.get(module)
        self.detail[module] = [done, max(total, known[1] if known else 0)]
        # The totals, as compare() announces them before it reads, are written at once.
        self.write(force=known is None)

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        t = current_envsync.tables
        with connection() as conn:
            conn.execute(t.comparison_parts.update().where(t.comparison_parts.c.id == self.part_id)
                         .values(progress_detail={**self.estimate, **self.detail}))
            summed = _summed(conn.execute(sa.select(t.comparison_parts.c.progress_detail).where(
                t.comparison_parts.c.comparison_id == self.comparison_id)).scalars())
            done = sum(value[0] for value in summed.values())
            total = sum(value[1] for value in summed.values())
            conn.execute(t.comparisons.update().where(t.comparisons.c.id == self.comparison_id).values(
                progress_done=min(done, total), progress_total=total, progress_detail=summed))
            conn.commit()

    def complete(self) -> None:
        for value in self.detail.values():
            value[0] = value[1]
        self.write(force=True)


def _summed(details: Iterable[dict[str, list[int]] | None]) -> dict[str, list[int]]:
    """{module: [done, total]} of several parts, added up."""
    summed: dict[str, list[int]] = {}
    for detail in details:
        for module, (done, total) in (detail or {}).items():
            entry = summed.setdefault(module, [0, 0])
            entry[0] += done
            entry[1] += total
    return summed


def _scope(info: ComparisonInfo):  # noqa: ANN202
    modules = [current_envsync.modules[key] for key in info.modules]
    picked = {module.key: (frozenset(info.gallery_folders) if info.gallery_folders is not None else None)
              for module in modules if module.picker is not None}
    return modules, picked, source_side(info.direction), target_side(info.direction)


def _plan_parts(info: ComparisonInfo) -> tuple[list[dict], dict[str, int]]:
    """The comparison's parts, and the rows of each table (both sides), which a single part takes as its
    progress totals. One part compares everything, unless several workers serve the queue and a table
    has more than ENVSYNC_COMPARISON_PART_ROWS rows: then that table is cut in key ranges of at least
    that many rows, at most one per worker, each a job that any worker can take, and one more part
    (without a table) compares every other table. Parts cost a job each (its fork, reflection and
    counts): one worker running five parts of a million products took half as long again as one job."""
    modules, picked, source, target = _scope(info)
    sizes = count_tables(source, target, modules, picked=picked)
    part_rows = current_envsync.settings.comparison_part_rows
    large = [(module, spec) for module in modules for spec in module.tables if sizes[spec.name] > part_rows]
    serving = len(workers()) if large else 0
    if serving < 2:
        large = []
    parts = []
    for module, spec in large:
        count = min(serving, -(-sizes[spec.name] // part_rows))
        ranges = split_key_ranges(source, module, spec.name, count, picked=picked.get(module.key))
        # Each range holds about its share of the table's rows: its progress total until it runs.
        shares = [sizes[spec.name] // len(ranges)] * len(ranges)
        shares[-1] += sizes[spec.name] - sum(shares)
        parts += [{"module": module.key, "table_name": spec.name, "low": r.low, "high": r.high,
                   "progress_detail": {module.key: [0, share]}} for r, share in zip(ranges, shares, strict=True)]
    split = {spec.name for _module, spec in large}
    rest = {module.key: sum(sizes[spec.name] for spec in module.tables if spec.name not in split) for module in modules}
    if len(split) < len(sizes):
        # The whole comparison, or every table no range part takes (see _part_ranges).
        parts.append({"module": None, "table_name": None, "low": None, "high": None,
                      "progress_detail": {key: [0, rows] for key, rows in rest.items()}})
    return parts, sizes


def _part_ranges(part: sa.Row, info: ComparisonInfo) -> dict[str, KeyRange] | None:
    """What ``part`` compares: one table's key range, or, for a part without a table, every table no
    other part of its comparison takes (None: every table)."""
    if part.table_name is not None:
        return {part.table_name: KeyRange(part.low, part.high)}
    p = current_envsync.tables.comparison_parts
    with connection() as conn:
        taken = set(conn.execute(sa.select(p.c.table_name).where(
            p.c.comparison_id == part.comparison_id, p.c.table_name.is_not(None))).scalars())
    if not taken:
        return None
    return {spec.name: KeyRange() for key in info.modules for spec in current_envsync.modules[key].tables
            if spec.name not in taken}


def run_comparison(comparison_id: int) -> dict[str, int] | None:
    """Start a queued comparison (the worker's side; safe to run twice): cut it into parts, run a
    single part at once, or queue the parts for any number of workers and a job that ends it."""
    info = get_comparison(comparison_id)
    if info.status in (ComparisonStatus.READY, ComparisonStatus.FAILED):
        return info.counts
    tables = current_envsync.tables
    try:
        parts, sizes = _plan_parts(info)
    except Exception as exc:
        _fail_comparison(info, exc)
        raise
    with connection() as conn:
        # A rerun (the first worker died) starts from a clean slate.
        conn.execute(tables.changes.delete().where(tables.changes.c.comparison_id == comparison_id))
        conn.execute(tables.comparison_parts.delete().where(tables.comparison_parts.c.comparison_id == comparison_id))
        # The totals are known before any part runs: the progress bar's end does not move as parts start.
        conn.execute(tables.comparisons.update().where(tables.comparisons.c.id == comparison_id).values(
            status=ComparisonStatus.RUNNING.value, started_at=utcnow(), error=None, progress_done=0,
            progress_total=sum(sizes.values()), progress_detail=_summed(part["progress_detail"] for part in parts)))
        part_ids = [conn.execute(tables.comparison_parts.insert().values(
            comparison_id=comparison_id, status=ComparisonStatus.QUEUED.value, **part)).inserted_primary_key[0]
            for part in parts]
        conn.commit()
    if len(part_ids) == 1:
        run_comparison_part(part_ids[0], totals=sizes)
        return finish_comparison(comparison_id)
    from rq.job import Dependency

    from ..jobs.comparison import finish_comparison as finish_job
    from ..jobs.comparison import run_comparison_part as part_job

    jobs = [queue().enqueue(part_job, part_id, job_id=job_id("comparison", comparison_id, "part", part_id))
            for part_id in part_ids]
    queue().enqueue(finish_job, comparison_id, job_id=job_id("comparison", comparison_id, "finish"),
                    depends_on=Dependency(jobs=jobs, allow_failure=True))
    return None


def run_comparison_part(part_id: int, totals: dict[str, int] | None = None) -> int:
    """Compare one part and store its changes; returns how many. Safe to run twice. ``totals``: the
    rows of each table of the part, when the caller counted them already."""
    tables = current_envsync.tables
    p = tables.comparison_parts
    with connection() as conn:
        part = conn.execute(sa.select(p).where(p.c.id == part_id)).first()
    if part is None or part.status == ComparisonStatus.READY.value:
        return 0
    info = get_comparison(part.comparison_id)
    if info.status is not ComparisonStatus.RUNNING:
        return 0
    with connection() as conn:
        conn.execute(tables.changes.delete().where(tables.changes.c.part_id == part_id))
        conn.execute(p.update().where(p.c.id == part_id).values(status=ComparisonStatus.RUNNING.value))
        conn.commit()
    try:
        modules, picked, source, target = _scope(info)
        # Every module stays in view (a reference may be met by another module's records); only the
        # part's tables and key range are compared.
        ranges = _part_ranges(part, info)
        progress = _ProgressWriter(info.id, part_id, part.progress_detail)
        stored = 0
        with connection() as conn:
            baseline = SqlBaselineReader(conn, tables.baseline)
            batch: list[tuple] = []
            for change in compare(source, target, modules, mode=info.mode, picked=picked, baseline=baseline,
                                  progress=progress, ranges=ranges, totals=totals):
                batch.append(_change_row(info.id, change, part_id))
                if len(batch) >= STORE_BATCH:
                    stored += _store(batch)
                    batch = []
            stored += _store(batch)
        progress.complete()
    except Exception as exc:
        with connection() as conn:
            conn.execute(p.update().where(p.c.id == part_id).values(status=ComparisonStatus.FAILED.value,
                                                                   error=str(exc)))
            conn.commit()
        _fail_comparison(info, exc)
        raise
    with connection() as conn:
        conn.execute(p.update().where(p.c.id == part_id).values(status=ComparisonStatus.READY.value))
        conn.commit()
    return stored


def finish_comparison(comparison_id: int) -> dict[str, int] | None:
    """Once every part is done: count the tabs, mark the comparison ready and tell the initiator."""
    tables = current_envsync.tables
    info = get_comparison(comparison_id)
    if info.status is not ComparisonStatus.RUNNING:
        return info.counts
    with connection() as conn:
        statuses = conn.execute(sa.select(tables.comparison_parts.c.status).where(
            tables.comparison_parts.c.comparison_id == comparison_id)).scalars().all()
    if any(status != ComparisonStatus.READY.value for status in statuses):
        return None  # a part failed (the comparison says why) or was lost; a rerun starts over
    counts = {tab.value: total["total"] for tab, total in
              ((Tab(tab), total) for tab, total in selection_counts(comparison_id).items())}
    _finish(comparison_id, ComparisonStatus.READY, counts=counts)
    _notify_ready(get_comparison(comparison_id))
    return counts


#: The columns of a stored change, in the order _change_row gives them.
_CHANGE_COLUMNS = ("comparison_id", "part_id", "module", "table_name", "key", "tab", "action", "reason", "label",
                   "selected", "selectable", "source_fingerprint", "target_fingerprint", "needs")


def _change_row(comparison_id: int, change: Change, part_id: int | None = None) -> tuple:
    """A change as the driver stores it (``needs`` as JSON text): there are millions to write."""
    needs = (json.dumps([{"table_name": ref.table_name, "key": ref.key} for ref in change.needs])
             if change.needs else None)
    return (comparison_id, part_id, change.module, change.table_name, change.key, change.tab, change.action,
            change.reason, change.label[:1000], change.selected_by_default, change.selectable,
            change.source_fingerprint, change.target_fingerprint, needs)


def _store(rows: list[tuple]) -> int:
    from ..engine.bulk import insert_rows

    if rows:
        with connection() as conn:
            insert_rows(conn, current_envsync.tables.changes, _CHANGE_COLUMNS, rows, process=False)
            conn.commit()
    return len(rows)


def _fail_comparison(info: ComparisonInfo, exc: BaseException) -> None:
    from .messages import add_message

    reason = f"The comparison could not be completed: {exc}"
    t = current_envsync.tables.comparisons
    with connection() as conn:  # once, even when several parts fail; the message with the outcome
        claimed = conn.execute(t.update().where(t.c.id == info.id, t.c.status.in_(
            [ComparisonStatus.QUEUED.value, ComparisonStatus.RUNNING.value])).values(
            status=ComparisonStatus.FAILED.value, finished_at=utcnow(), error=reason))
        if claimed.rowcount == 0:
            return
        add_message(title="FAILURE: Comparison of environments", level="failure", recipient=info.requested_by,
                    comparison_id=info.id, conn=conn,
                    body=f"The comparison #{info.id} ({info.direction.arrow}) failed. {reason} Nothing was changed "
                         "in either environment; start a new comparison.")
        conn.commit()
    _notify(get_comparison(info.id), "comparison_failed", f"FAILURE: comparison {info.direction.arrow}")


def _notify_ready(info: ComparisonInfo) -> None:
    _notify(info, "comparison_ready", f"Comparison ready: {info.direction.arrow}")


def _notify(info: ComparisonInfo, template: str, subject: str) -> None:
    from ..mail import send

    link = f"{info.base_url or ''}/admin/synchronization/comparison/{info.id}"
    send(template, info.requested_by, subject, comparison=info, link=link)


# --- the review -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChangeInfo:
    id: int
    comparison_id: int
    module: str
    table_name: str
    key: str
    tab: Tab
    action: str
    reason: str | None
    label: str
    selected: bool
    selectable: bool
    needs: list[dict]

    @classmethod
    def from_row(cls, row: sa.Row) -> ChangeInfo:
        return cls(id=row.id, comparison_id=row.comparison_id, module=row.module, table_name=row.table_name,
                   key=row.key, tab=Tab(row.tab), action=row.action, reason=row.reason, label=row.label,
                   selected=bool(row.selected), selectable=bool(row.selectable), needs=list(row.needs or []))

    @property
    def key_value(self) -> object:
        return decode_key(self.key)

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "tab": self.tab.value, "module": self.module, "table": self.table_name,
                "key": self.key_value, "label": self.label, "selected": self.selected,
                "selectable": self.selectable, "reason": self.reason, "action": self.action,
                "needs": self.needs}


@dataclass(frozen=True)
class ChangePage:
    changes: list[ChangeInfo]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _changes_query(comparison_id: int, tab: Tab | str | None = None, module: str | None = None,
                   search: str | None = None):
    t = current_envsync.tables.changes
    query = sa.select(t).where(t.c.comparison_id == comparison_id)
    if tab:
        query = query.where(t.c.tab == Tab(tab).value)
    if module:
        query = query.where(t.c.module == module)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(sa.or_(t.c.label.ilike(f"%{escaped}%", escape="\\"),
                                   t.c.key.ilike(f"%{escaped}%", escape="\\")))
    return query


def list_changes(comparison_id: int, *, tab: Tab | str | None = None, module: str | None = None,
                 search: str | None = None, page: int = 1, per_page: int = 50) -> ChangePage:
    get_comparison(comparison_id)
    t = current_envsync.tables.changes
    page = max(1, int(page))
    per_page = min(max(1, int(per_page)), 1000)
    query = _changes_query(comparison_id, tab, module, search)
    with connection() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(query.order_by(t.c.id).limit(per_page).offset((page - 1) * per_page)).all()
    return ChangePage([ChangeInfo.from_row(row) for row in rows], total, page, per_page)


def all_changes(comparison_id: int) -> list[ChangeInfo]:
    get_comparison(comparison_id)
    t = current_envsync.tables.changes
    with connection() as conn:
        rows = conn.execute(_changes_query(comparison_id).order_by(t.c.id)).all()
    return [ChangeInfo.from_row(row) for row in rows]


def get_change(change_id: int) -> ChangeInfo:
    t = current_envsync.tables.changes
    with connection() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == change_id)).first()
    if row is None:
        raise NotFound(f"There is no change #{change_id}.")
    return ChangeInfo.from_row(row)


def selection_counts(comparison_id: int) -> dict[str, dict[str, int]]:
    """Per tab: how many changes there are and how many are checked."""
    t = current_envsync.tables.changes
    with connection() as conn:
        rows = conn.execute(
            sa.select(t.c.tab, sa.func.count(), sa.func.sum(sa.case((t.c.selected, 1), else_=0)))
            .where(t.c.comparison_id == comparison_id).group_by(t.c.tab)
        ).all()
    result = {tab.value: {"total": 0, "selected": 0} for tab in Tab}
    for tab, total, selected in rows:
        result[tab] = {"total": total, "selected": int(selected or 0)}
    return result


def selected_summary(comparison_id: int) -> dict[str, dict[str, int]]:
    """What a synchronization of the checked changes would do: counts per module and tab."""
    t = current_envsync.tables.changes
    with connection() as conn:
        rows = conn.execute(
            sa.select(t.c.module, t.c.tab, sa.func.count())
            .where(t.c.comparison_id == comparison_id, t.c.selected.is_(True)).group_by(t.c.module, t.c.tab)
        ).all()
    summary: dict[str, dict[str, int]] = {}
    for module, tab, count in rows:
        summary.setdefault(module, {})[tab] = count
    return summary


def _check_selectable(comparison_id: int) -> None:
    info = get_comparison(comparison_id)
    if info.status is not ComparisonStatus.READY:
        raise NotAllowed(f"Comparison #{comparison_id} is {info.status.value}; changes can be checked once it is ready.")
    s = current_envsync.tables.synchronizations
    with connection() as conn:
        active = conn.execute(sa.select(s.c.id).where(
            s.c.comparison_id == comparison_id,
            s.c.status.in_([SynchronizationStatus.SCHEDULED.value, SynchronizationStatus.RUNNING.value]))).first()
    if active:
        raise NotAllowed(f"Synchronization #{active.id} of these changes is scheduled or running; "
                         "cancel it before changing the selection.")


def select_changes(comparison_id: int, *, change_ids: Sequence[int] | None = None, selected: bool = True,
                   tab: Tab | str | None = None, module: str | None = None, search: str | None = None) -> int:
    """Check (or uncheck) the given changes, or every change matching tab/module/search when
    ``change_ids`` is None. Changes that may never be applied (unsafe paths) are refused by name
    when named, and skipped by a select-all. Returns how many changes were updated."""
    _check_selectable(comparison_id)
    t = current_envsync.tables.changes
    with connection() as conn:
        if change_ids is not None:
            ids = sorted({int(change_id) for change_id in change_ids})
            rows = conn.execute(sa.select(t.c.id, t.c.selectable, t.c.label).where(
                t.c.comparison_id == comparison_id, t.c.id.in_(ids))).all()
            found = {row.id for row in rows}
            missing = [change_id for change_id in ids if change_id not in found]
            if missing:
                raise NotFound(f"Comparison #{comparison_id} has no change #{missing[0]}.")
            blocked = [row for row in rows if selected and not row.selectable]
            if blocked:
                raise InvalidInput(f"Change #{blocked[0].id} ({blocked[0].label}) cannot be synchronized; "
                                   "see its reason.")
            condition = t.c.id.in_(ids)
        else:
            condition = t.c.id.in_(_changes_query(comparison_id, tab, module, search)
                                   .with_only_columns(t.c.id).scalar_subquery())
        if selected:
            condition = sa.and_(condition, t.c.selectable.is_(True))
        result = conn.execute(t.update().where(t.c.comparison_id == comparison_id, condition)
                              .values(selected=selected))
        conn.commit()
    return result.rowcount


def change_diff(change_id: int):
    """The field-by-field diff of one change, computed now from both environments."""
    change = get_change(change_id)
    info = get_comparison(change.comparison_id)
    module = current_envsync.modules[change.module]
    return field_diff(source_side(info.direction), target_side(info.direction), module, change.table_name,
                      change.key)


def wait_for_comparison(comparison_id: int, timeout: float | None = None,
                        on_progress=None) -> ComparisonInfo:  # noqa: ANN001
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = get_comparison(comparison_id)
        if on_progress:
            on_progress(info)
        if info.status in (ComparisonStatus.READY, ComparisonStatus.FAILED):
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise NotAllowed(f"Comparison #{comparison_id} is still {info.status.value} after {timeout:.0f} s.")
        time.sleep(0.2)


__all__ = [
    "ChangeInfo", "ChangePage", "all_changes", "finish_comparison", "run_comparison_part", "change_diff", "get_change", "get_comparison", "list_changes",
    "parse_direction", "parse_mode", "parse_modules", "picker_items", "run_comparison", "select_changes",
    "selected_summary", "selection_counts", "start_comparison", "suggested_items", "wait_for_comparison",
]
