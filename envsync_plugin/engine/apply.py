"""The apply engine: writes the checked changes of a comparison into the target, all or nothing.

    result = apply(source, target, modules, items, test_import=False, sync_id="42",
                   backup=FolderBackupStore(instance / "backups"), should_cancel=..., progress=...)
    revert(target, modules, backup, "42")        # the target as it was before synchronization 42
    finish_pending_file_moves(target)            # on worker start (engine/journal.py)

``source`` and ``target`` are anything with ``engine`` and ``media_root`` (an ``Environment``).
``apply`` runs these steps, in one transaction on the target:

1. drift check: re-reads every item on both sides (the target's rows locked) and raises
   DriftDetected if a fingerprint differs from the comparison's;
2. references: raises ReferenceMissing if an inserted/updated row's foreign key would point at a
   row absent from the target after the apply;
3. backup (not for a test import): the target rows and files about to be overwritten or deleted;
4. writes: inserts and updates parents first, deletes children first (tables ordered by their
   reflected foreign keys, ties in module declaration order), rows copied by primary key in chunks
   with executemany; ``should_cancel`` is asked between chunks; a database error rolls back and
   raises ApplyFailed naming the record; updates leave a table's ``ignore`` columns alone;
5. files: source files copied into the target's staging folder, a journal written, the commit,
   then the staged files moved into place and deleted rows' files removed (engine/journal.py);
   PostgreSQL sequences advanced past the inserted ids just before the commit.

A test import runs steps 1-5 up to the commit, then rolls back and drops the staged files. Rows are
held in memory between the read and the write (a few hundred bytes a record).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import sqlalchemy as sa

from ..errors import EnvSyncError
from ..modules import SyncModule
from .backup import BackupRecord, BackupStore, FolderBackupStore
from .files import UnsafePath, resolve_media_path
from .fingerprint import row_fingerprint
from .journal import MediaEnvironment, Staging, Witness, finish_pending_file_moves
from .schema import TablePlan, chunked, reflect, select_rows
from .types import Change, Progress, RecordRef, decode_key, encode_key

__all__ = [
    "ApplyError", "ApplyFailed", "ApplyItem", "ApplyResult", "AppliedRecord", "BaselineRow", "Canceled",
    "DriftDetected", "DriftedRecord", "MediaEnvironment", "MissingReference", "ReferenceMissing",
    "RevertRefused", "RevertResult", "apply", "finish_pending_file_moves", "revert",
]

#: Rows per statement batch; also how often ``should_cancel`` is asked.
CHUNK = 2000
#: Witness rows the journal keeps to tell, after a crash, whether the commit happened.
WITNESSES = 20

ACTIONS = ("insert", "update", "delete")


# --- errors ---------------------------------------------------------------------------------------

class ApplyError(EnvSyncError):
    """Base of the reasons an apply or revert stops; the target is left exactly as it was."""


@dataclass(frozen=True)
class DriftedRecord:
    table_name: str
    key: str
    label: str
    side: str  # "source" | "target"


def _name(table_name: str, key: str, label: str = "") -> str:
    return f"{table_name} {key}" + (f" ({label})" if label else "")


def _listing(lines: list[str], limit: int = 10) -> str:
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


class DriftDetected(ApplyError):
    """Raised when the source or the target changed since the comparison; nothing was applied."""

    def __init__(self, drifted: list[DriftedRecord]) -> None:
        self.drifted = drifted
        super().__init__(
            f"{len(drifted)} record(s) changed since the comparison, nothing was applied: "
            + _listing([f"{_name(d.table_name, d.key, d.label)} changed in the {d.side}" for d in drifted])
            + ". Run a new comparison."
        )


@dataclass(frozen=True)
class MissingReference:
    record: RecordRef
    label: str
    needs: RecordRef


class ReferenceMissing(ApplyError):
    """Raised when an applied record would point at a record missing from the target; nothing was applied."""

    def __init__(self, missing: list[MissingReference]) -> None:
        self.missing = missing
        super().__init__(
            f"{len(missing)} record(s) need a record that would be missing in the target, nothing was applied: "
            + _listing([f"{_name(m.record.table_name, m.record.key, m.label)} needs "
                        f"{_name(m.needs.table_name, m.needs.key)}" for m in missing])
            + ". Select the records they need too, or run a new comparison."
        )


class ApplyFailed(ApplyError):
    """Raised when the database refuses a record (a constraint) or a file cannot be placed; rolled back."""

    def __init__(self, record: RecordRef | None, label: str, reason: str) -> None:
        self.record, self.label, self.reason = record, label, reason
        where = f"{_name(record.table_name, record.key, label)}: " if record else ""
        super().__init__(f"{where}{reason}. Nothing was applied.")


class Canceled(ApplyError):
    """Raised when ``should_cancel`` said yes; everything was rolled back."""

    def __init__(self) -> None:
        super().__init__("The synchronization was canceled; nothing was applied.")


class RevertRefused(ApplyError):
    """Raised when the target changed since the synchronization that is to be reverted."""

    def __init__(self, changed: list[DriftedRecord]) -> None:
        self.changed = changed
        super().__init__(
            f"{len(changed)} record(s) changed in the target since the synchronization, so it cannot be "
            "reverted without losing those changes: "
            + _listing([_name(c.table_name, c.key, c.label) for c in changed]) + "."
        )


# --- values in and out ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ApplyItem:
    """A checked change: apply ``action`` to the record ``key`` of ``table_name``.

    The fingerprints are the ones the comparison saw (None: the record was absent on that side).
    """

    module: str
    table_name: str
    key: str
    action: str
    source_fingerprint: str | None
    target_fingerprint: str | None
    label: str = ""

    @classmethod
    def from_change(cls, change: Change) -> ApplyItem:
        return cls(change.module, change.table_name, change.key, change.action,
                   change.source_fingerprint, change.target_fingerprint, change.label)


class AppliedRecord(NamedTuple):
    """A record the apply wrote (a tuple, so it goes into a JSON summary as it is)."""

    module: str
    table_name: str
    key: str
    action: str
    label: str


class BaselineRow(NamedTuple):
    """A row for ``envsync_baseline`` (unpacks as baseline.record_baseline takes it); ``fingerprint``
    None means: forget the record."""

    table_name: str
    key: str
    fingerprint: str | None


@dataclass
class ApplyResult:
    """What was applied (or, for a test import, what would have been)."""

    sync_id: str
    test_import: bool
    applied: dict[str, dict[str, int]]  # module -> action -> records
    records: list[AppliedRecord]
    baseline: list[BaselineRow]  # empty for a test import
    backup_id: str | None  # None for a test import or without a backup store
    files_copied: int = 0
    files_removed: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Records per action over all modules."""
        return {action: sum(per.get(action, 0) for per in self.applied.values()) for action in ACTIONS}


@dataclass
class RevertResult:
    sync_id: str
    reverted: dict[str, int]  # action undone -> records
    baseline: list[BaselineRow]  # removals: the reverted records count as never synchronized again
    files_copied: int = 0
    files_removed: int = 0


# --- reading (through engine/schema.py, so fingerprints are the comparison's) -----------------

@dataclass
class _Table:
    """One module table as the target (and, in an apply, the source) sees it."""

    module: str
    target: TablePlan
    source: TablePlan | None  # None in a revert

    @property
    def name(self) -> str:
        return self.target.spec.name

    @property
    def pk(self) -> list[str]:
        return list(self.target.pk)

    @property
    def insert_columns(self) -> list[str]:
        return list(self.target.columns)  # build(columns=...) made sure the source has the same ones

    @property
    def update_columns(self) -> list[str]:
        # Updates leave ignored columns (counters, timestamps) as the target has them.
        return [n for n in self.target.compared_names if n not in self.target.pk]


def _key_values(table: sa.Table, key: str) -> tuple:
    value = decode_key(key)
    return tuple(value) if len(table.primary_key.columns) > 1 else (value,)


@dataclass
class _SideRows:
    """Rows of one side read for the items of one table: values by column, file paths, fingerprints."""

    rows: dict[str, dict[str, Any]]
    paths: dict[str, str | UnsafePath]
    fingerprints: dict[str, str]


def _decode(plan: TablePlan, key: str) -> Any:
    # Integer keys are nearly all keys: skip the JSON parser for them.
    if len(plan.pk) == 1 and key.isdigit() and (key == "0" or key[0] != "0"):
        return int(key)
    return plan.decode(key)


#: Keys per range read; a run of integer keys this dense is read as ``low <= key < high``.
RANGE_CHUNK = 5000


def _key_queries(plan: TablePlan, dialect: str, values: list[Any]) -> Iterator[sa.Select[Any]]:
    """The SELECTs that fetch ``values``: key ranges where integer keys are dense (one cheap query for
    thousands of rows, instead of a compiled ``IN`` list per few hundred), ``IN`` lookups elsewhere."""
    if len(plan.pk) == 1 and values and all(type(v) is int for v in values):
        values = sorted(values)
        sparse: list[Any] = []
        for start in range(0, len(values), RANGE_CHUNK):
            part = values[start:start + RANGE_CHUNK]
            if part[-1] - part[0] < 2 * len(part):
                yield select_rows(plan, None, dialect, low=part[0], high=part[-1] + 1, ordered=False)
            else:
                sparse.extend(part)
        values = sparse
    for part in chunked(values):
        yield select_rows(plan, None, dialect, keys=part, ordered=False)


def _read_side(conn: sa.Connection, media_root: Path, plan: TablePlan, keys: Iterable[str], *,
               lock: bool = False) -> _SideRows:
    """The rows of ``keys`` (JSON keys) whatever the row filter; ``lock`` row-locks them (PostgreSQL)."""
    by_value = {_decode(plan, key): key for key in keys}
    key_of = plan.key_of
    fingerprint = plan.fingerprinter(media_root)
    read = _SideRows({}, {}, {})
    columns = plan.columns
    n = len(columns)
    for query in _key_queries(plan, conn.dialect.name, list(by_value)):
        if lock and conn.dialect.name != "sqlite":
            query = query.with_for_update(of=plan.table)
        for row in conn.execute(query):
            key = by_value.get(key_of(row))
            if key is None:
                continue  # a row inside a key range that no item names
            read.rows[key] = dict(zip(columns, row[:n], strict=True))
            read.fingerprints[key] = fingerprint(row)
            if plan.spec.file is not None:
                try:
                    read.paths[key] = plan.media_path(row)
                except UnsafePath as error:
                    read.paths[key] = error
    return read


def _table_order(tables: Mapping[str, sa.Table], declared: list[str]) -> list[str]:
    """``declared`` sorted parents first by foreign key, declaration order breaking ties (and cycles)."""
    wanted = set(declared)
    parents = {name: {fk.column.table.name for fk in tables[name].foreign_keys} & wanted - {name}
               for name in declared}
    ordered: list[str] = []
    pending = list(declared)
    while pending:
        ready = next((n for n in pending if parents[n] <= set(ordered)), pending[0])
        ordered.append(ready)
        pending.remove(ready)
    return ordered


# --- the plan and its execution -------------------------------------------------------------------

@dataclass
class _Step:
    table: _Table
    action: str
    keys: list[str]
    rows: list[dict[str, Any]]  # insert: full rows; update: the SET columns; delete: unused
    labels: Mapping[str, str]


@dataclass
class _Files:
    copies: list[tuple[Path, str, RecordRef]] = field(default_factory=list)  # source file, destination, record
    removals: set[str] = field(default_factory=set)


def _run_steps(conn: sa.Connection, steps: list[_Step], should_cancel: Callable[[], bool],
               progress: Progress | None) -> None:
    totals: dict[str, int] = defaultdict(int)
    for step in steps:
        totals[step.table.module] += len(step.keys)
    done: dict[str, int] = defaultdict(int)
    for step in steps:
        table = step.table.target.table
        pk = step.table.pk
        if step.action == "insert":
            statement = table.insert()
        elif step.action == "update":
            # SET takes the columns of each row dict; the key travels in "_key_*" parameters.
            statement = table.update().where(*(table.c[n] == sa.bindparam(f"_key_{i}") for i, n in enumerate(pk)))
        else:
            statement = table.delete().where(*(table.c[n] == sa.bindparam(f"_key_{i}") for i, n in enumerate(pk)))
        for start in range(0, len(step.keys), CHUNK):
            if should_cancel():
                raise Canceled()
            keys = step.keys[start:start + CHUNK]
            params = _params(step, start, keys)
            savepoint = conn.begin_nested()
            try:
                conn.execute(statement, params)
                savepoint.commit()
            except sa.exc.DBAPIError as error:
                savepoint.rollback()
                raise _culprit(conn, step, statement, keys, params, error) from error
            done[step.table.module] += len(keys)
            if progress is not None:
                progress(step.table.module, done[step.table.module], totals[step.table.module])


def _params(step: _Step, start: int, keys: Sequence[str]) -> list[dict[str, Any]]:
    if step.action == "insert":
        return step.rows[start:start + len(keys)]
    named = [{f"_key_{i}": v for i, v in enumerate(_key_values(step.table.target.table, key))} for key in keys]
    if step.action == "update":
        return [{**row, **key} for row, key in zip(step.rows[start:start + len(keys)], named, strict=True)]
    return named


def _culprit(conn: sa.Connection, step: _Step, statement: Any, keys: Sequence[str], params: list[dict],
             error: sa.exc.DBAPIError) -> ApplyFailed:
    """Replay a failed chunk a row at a time (each in a savepoint) to name the record the database refused."""
    for key, row in zip(keys, params, strict=True):
        savepoint = conn.begin_nested()
        try:
            conn.execute(statement, [row])
            savepoint.commit()
        except sa.exc.DBAPIError as row_error:
            savepoint.rollback()
            return ApplyFailed(RecordRef(step.table.name, key), step.labels.get(key, ""),
                               f"the target database refused to {step.action} it: {_constraint(row_error)}")
    return ApplyFailed(RecordRef(step.table.name, keys[0]), step.labels.get(keys[0], ""),
                       f"the target database refused to {step.action} a batch from here: {_constraint(error)}")


def _constraint(error: sa.exc.DBAPIError) -> str:
    return " ".join(str(error.orig).split())


def _advance_sequences(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """PostgreSQL: move each serial/identity sequence past the ids we inserted explicitly."""
    if conn.dialect.name != "postgresql":
        return  # SQLite picks max(rowid) + 1 by itself
    preparer = conn.dialect.identifier_preparer
    for table in tables:
        for column in table.primary_key.columns:
            sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                    {"t": preparer.format_table(table), "c": column.name}).scalar()
            if sequence is None:
                continue
            highest = conn.execute(sa.select(sa.func.max(column))).scalar()
            last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {sequence}")).one()  # noqa: S608 - a name PostgreSQL gave
            if highest is not None and (highest > last or (highest == last and not called)):
                conn.execute(sa.text("SELECT setval(:s, :v)"), {"s": sequence, "v": highest})


def _begin_target(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        # Take the write lock now, so nothing changes between the drift check and the commit (the
        # driver would otherwise start the transaction only at the first write).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()


def _execute(conn: sa.Connection, steps: list[_Step],
             files: Callable[[], _Files], witnesses: list[Witness], staging: Staging, *,
             test_import: bool, should_cancel: Callable[[], bool], progress: Progress | None) -> tuple[int, int]:
    """Writes, stages files, then commits (or rolls back for a test import). Returns the file counts."""
    _run_steps(conn, steps, should_cancel, progress)
    plan = files()
    for source, destination, record in plan.copies:
        if should_cancel():
            raise Canceled()
        try:
            staging.stage(source, destination)
        except OSError as error:
            raise ApplyFailed(record, "", f"its file could not be copied: {error}") from error
    for relative in sorted(plan.removals):
        staging.remove_later(relative)
    if should_cancel():
        raise Canceled()
    if test_import:
        conn.rollback()
        return len(plan.copies), len(plan.removals)
    _advance_sequences(conn, {s.table.name: s.table.target.table for s in steps if s.action == "insert"}.values())
    staging.write_journal(witnesses)
    try:
        conn.commit()
    except sa.exc.DBAPIError as error:
        raise ApplyFailed(None, "", f"the target database refused the commit: {_constraint(error)}") from error
    return len(plan.copies), len(plan.removals)


def _finish_files(staging: Staging, test_import: bool) -> None:
    """After the commit (outside the rollback path: a failure here leaves the journal for recovery)."""
    if test_import:
        staging.discard()
    else:
        staging.complete()


def _witnesses(steps: list[_Step], before: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[Witness]:
    """A few rows whose database content the plan changes, to tell later whether it committed."""
    found: list[Witness] = []
    for step in steps:
        for key, row in zip(step.keys, step.rows or [None] * len(step.keys), strict=True):
            old = before.get((step.table.name, key))
            if step.action == "delete":
                columns = list(old or {})
                found.append(Witness(step.table.name, key, columns, row_fingerprint(old, columns) if old else None, None))
            else:
                columns = list(row)
                after = row_fingerprint(row, columns)
                was = row_fingerprint(old, columns) if old is not None else None
                if after != was:
                    found.append(Witness(step.table.name, key, columns, was, after))
            if len(found) >= WITNESSES:
                return found
    return found


def _plans(modules: Sequence[SyncModule], wanted: Iterable[str], target: sa.Connection,
           source: sa.Connection | None) -> tuple[dict[str, _Table], list[str], Mapping[str, sa.Table]]:
    """The tables of ``wanted`` as modules declare them, and their write order (parents first)."""
    wanted = set(wanted)
    declared = [(module, spec) for module in modules for spec in module.tables if spec.name in wanted]
    unknown = wanted - {spec.name for _, spec in declared}
    if unknown:
        raise ApplyFailed(None, "", f"the table(s) {', '.join(sorted(unknown))} belong to no module given")
    target_tables = reflect(target, wanted)
    source_tables = reflect(source, wanted) if source is not None else None
    infos: dict[str, _Table] = {}
    for module, spec in declared:
        source_plan = TablePlan.build(source_tables, module, spec) if source_tables is not None else None
        target_plan = TablePlan.build(target_tables, module, spec,
                                      columns=source_plan.columns if source_plan else None)
        infos[spec.name] = _Table(module.key, target_plan, source_plan)
    return infos, _table_order(target_tables, [spec.name for _, spec in declared]), target_tables


def _steps(infos: Mapping[str, _Table], order: list[str], work: Mapping[tuple[str, str], list[str]],
           rows: Callable[[str, str, str], dict[str, Any]], labels: Mapping[str, Mapping[str, str]]) -> list[_Step]:
    """Inserts and updates parents first, then deletes children first."""
    steps = []
    for name in order:
        for action in ("insert", "update"):
            keys = work.get((name, action), [])
            if keys:
                steps.append(_Step(infos[name], action, keys, [rows(name, action, k) for k in keys], labels[name]))
    for name in reversed(order):
        keys = work.get((name, "delete"), [])
        if keys:
            steps.append(_Step(infos[name], "delete", keys, [], labels[name]))
    return steps


def _source_snapshot(conn: sa.Connection) -> None:
    # One snapshot for every source read, so the copied rows form a consistent picture.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


# --- apply ----------------------------------------------------------------------------------------

def apply(source: MediaEnvironment, target: MediaEnvironment, modules: Sequence[SyncModule],
          items: Sequence[ApplyItem], *, test_import: bool = False, sync_id: str | None = None,
          backup: BackupStore | None = None, backup_dir: Path | None = None,
          should_cancel: Callable[[], bool] = lambda: False, progress: Progress | None = None) -> ApplyResult:
    """Apply ``items`` (the checked changes) from ``source`` to ``target``; see the module docstring.

    ``modules``: the host's module declarations (at least those of the items). ``backup``: where the
    backup for ``revert`` goes, under the id ``sync_id``; ``backup_dir`` is a shortcut for
    ``FolderBackupStore(backup_dir.parent)`` with id ``backup_dir.name``. Raises DriftDetected,
    ReferenceMissing, ApplyFailed or Canceled, each leaving the target exactly as it was.
    """
    if backup_dir is not None:
        backup = FolderBackupStore(Path(backup_dir).parent)
        sync_id = sync_id if sync_id is not None else Path(backup_dir).name
    sync_id = str(sync_id if sync_id is not None else uuid.uuid4().hex)
    backup_id = sync_id if backup is not None and not test_import else None
    by_table: dict[str, dict[str, ApplyItem]] = defaultdict(dict)
    for item in items:
        if item.action not in ACTIONS:
            raise ApplyFailed(RecordRef(item.table_name, item.key), item.label, f"unknown action {item.action!r}")
        key = item.key if item.key.isdigit() and (item.key == "0" or item.key[0] != "0") \
            else encode_key(decode_key(item.key))
        by_table[item.table_name][key] = item

    with source.engine.connect() as sconn, sconn.begin(), target.engine.connect() as conn:
        _source_snapshot(sconn)
        infos, order, target_tables = _plans(modules, by_table, conn, sconn)
        conn.rollback()  # reflection began a transaction; the apply's own starts now, with its lock
        _begin_target(conn)
        source_read = {name: _read_side(sconn, source.media_root, infos[name].source, by_table[name])
                       for name in order}
        target_read = {name: _read_side(conn, target.media_root, infos[name].target, by_table[name], lock=True)
                       for name in order}
        _check_unsafe(order, by_table, source_read, target_read)
        _check_drift(order, by_table, source_read, target_read)
        _check_references(conn, order, infos, by_table, source_read, target_read)

        work: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name in order:
            for key, item in by_table[name].items():
                work[(name, item.action)].append(key)

        def row_for(name: str, action: str, key: str) -> dict[str, Any]:
            values = source_read[name].rows[key]
            if action == "insert":
                return values  # already exactly the table's columns
            return {c: values[c] for c in infos[name].update_columns}

        labels = {name: {key: item.label for key, item in by_table[name].items()} for name in order}
        steps = _steps(infos, order, work, row_for, labels)
        witnesses = _witnesses(steps, {(name, key): row for name in order
                                       for key, row in target_read[name].rows.items()})

        def files() -> _Files:
            return _apply_files(conn, source, target, order, infos, by_table, source_read, target_read)

        staging = Staging(target.media_root, sync_id).open()
        try:
            if backup_id is not None:
                _save_backup(backup, backup_id, order, by_table, source_read, target_read, target.media_root)
            copied, removed = _execute(conn, steps, files, witnesses, staging, test_import=test_import,
                                       should_cancel=should_cancel, progress=progress)
        except BaseException:
            conn.rollback()
            staging.discard()
            if backup_id is not None:
                backup.discard(backup_id)
            raise
        _finish_files(staging, test_import)
    if backup_id is not None:
        backup.mark_complete(backup_id)

    applied: dict[str, dict[str, int]] = {}
    records, baseline = [], []
    for name in order:
        for key, item in by_table[name].items():
            counts = applied.setdefault(item.module, dict.fromkeys(ACTIONS, 0))
            counts[item.action] += 1
            records.append(AppliedRecord(item.module, name, key, item.action, item.label))
            if not test_import:
                # The target now holds the source's content, so its fingerprint is the source's.
                fingerprint = source_read[name].fingerprints.get(key) if item.action != "delete" else None
                baseline.append(BaselineRow(name, key, fingerprint))
    return ApplyResult(sync_id, test_import, applied, records, baseline, backup_id, copied, removed)


def _check_drift(order: list[str], by_table: Mapping[str, Mapping[str, ApplyItem]],
                 source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows]) -> None:
    drifted = []
    for name in order:
        for key, item in by_table[name].items():
            if source_read[name].fingerprints.get(key) != item.source_fingerprint:
                drifted.append(DriftedRecord(name, key, item.label, "source"))
            if target_read[name].fingerprints.get(key) != item.target_fingerprint:
                drifted.append(DriftedRecord(name, key, item.label, "target"))
    if drifted:
        raise DriftDetected(drifted)


def _check_unsafe(order: list[str], by_table: Mapping[str, Mapping[str, ApplyItem]],
                  source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows]) -> None:
    """A file name that would leave the media root stops the apply before anything is written."""
    for name in order:
        for key, item in by_table[name].items():
            for side in (source_read[name], target_read[name]):
                path = side.paths.get(key)
                if isinstance(path, UnsafePath):
                    raise ApplyFailed(RecordRef(name, key), item.label, f"unsafe file name: {path}")


def _check_references(conn: sa.Connection, order: list[str], infos: Mapping[str, _Table],
                      by_table: Mapping[str, Mapping[str, ApplyItem]], source_read: Mapping[str, _SideRows],
                      target_read: Mapping[str, _SideRows]) -> None:
    """Every foreign key of an inserted or updated row must find its parent in the target afterwards."""
    missing = []
    for name in order:
        writes = {k: source_read[name].rows[k] for k, item in by_table[name].items() if item.action != "delete"}
        if not writes:
            continue
        for constraint in infos[name].target.table.foreign_key_constraints:
            if len(constraint.elements) != 1:
                continue  # composite foreign keys are left to the database (ApplyFailed names the record)
            element = constraint.elements[0]
            child, parent, referred = element.parent.name, element.column.table, element.column.name
            needed = {k: row[child] for k, row in writes.items() if row.get(child) is not None}
            if not needed:
                continue
            added: set[Any] = set()
            removed: set[Any] = set()
            for key, item in by_table.get(parent.name, {}).items():
                old = target_read[parent.name].rows.get(key)
                if item.action == "delete":
                    if old is not None:
                        removed.add(old[referred])
                    continue
                new = source_read[parent.name].rows[key][referred]
                added.add(new)
                if old is not None and old[referred] != new:
                    removed.add(old[referred])
            present: set[Any] = set()
            for part in chunked(sorted(set(needed.values()) - added, key=repr)):
                present.update(conn.execute(sa.select(parent.c[referred]).where(parent.c[referred].in_(part))).scalars())
            pk = [c.name for c in parent.primary_key.columns]
            for key, value in needed.items():
                if value in added or (value in present and value not in removed):
                    continue
                needs_key = encode_key(value) if pk == [referred] else encode_key({referred: value})
                missing.append(MissingReference(RecordRef(name, key), by_table[name][key].label,
                                                RecordRef(parent.name, needs_key)))
    if missing:
        raise ReferenceMissing(missing)


def _save_backup(store: BackupStore, backup_id: str, order: list[str],
                 by_table: Mapping[str, Mapping[str, ApplyItem]], source_read: Mapping[str, _SideRows],
                 target_read: Mapping[str, _SideRows], media_root: Path) -> None:
    files: dict[str, Path] = {}
    records: list[BackupRecord] = []
    for name in order:
        for key, item in by_table[name].items():
            path = target_read[name].paths.get(key)
            kept = None
            if isinstance(path, str) and item.action != "insert":
                current = resolve_media_path(media_root, path)
                if current.is_file():
                    files[path] = current
                    kept = path
            after = source_read[name].fingerprints.get(key) if item.action != "delete" else None
            records.append(BackupRecord(name, key, item.action, target_read[name].rows.get(key), after, kept,
                                        item.label))
    store.save(backup_id, records, files)


def _apply_files(conn: sa.Connection, source: MediaEnvironment, target: MediaEnvironment, order: list[str],
                 infos: Mapping[str, _Table], by_table: Mapping[str, Mapping[str, ApplyItem]],
                 source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows]) -> _Files:
    """Once the rows are written: where each file goes (folder names as the target has them now)."""
    plan = _Files()
    for name in order:
        info = infos[name]
        if info.target.spec.file is None:
            continue
        written = [k for k, item in by_table[name].items() if item.action != "delete"]
        now = _read_side(conn, target.media_root, info.target, written)
        for key, item in by_table[name].items():
            old, new = target_read[name].paths.get(key), now.paths.get(key)
            if isinstance(new, UnsafePath):
                raise ApplyFailed(RecordRef(name, key), item.label, f"unsafe file name: {new}")
            if old is not None and old != new:
                plan.removals.add(old)
            if new is None:
                continue
            origin = resolve_media_path(source.media_root, source_read[name].paths[key])
            if origin.is_file():
                plan.copies.append((origin, new, RecordRef(name, key)))
            else:
                plan.removals.add(new)  # the source has no file: neither will the target
    plan.removals -= {destination for _, destination, _ in plan.copies}
    return plan


# --- revert ---------------------------------------------------------------------------------------

def revert(target: MediaEnvironment, modules: Sequence[SyncModule], backup: BackupStore, backup_id: str, *,
           sync_id: str | None = None, should_cancel: Callable[[], bool] = lambda: False,
           progress: Progress | None = None) -> RevertResult:
    """Restore the target as it was before the synchronization that saved ``backup_id``, all or nothing.

    Refused (RevertRefused) if a record that synchronization wrote has changed in the target since.
    On success the backup is discarded; the result's baseline rows remove the reverted records from
    the baseline (they compare as before their first synchronization).
    """
    records = list(backup.records(backup_id))
    by_table: dict[str, dict[str, BackupRecord]] = defaultdict(dict)
    for record in records:
        by_table[record.table_name][record.key] = record
    undo = {"insert": "delete", "update": "update", "delete": "insert"}
    sync_id = str(sync_id if sync_id is not None else f"revert-{backup_id}")

    with target.engine.connect() as conn:
        infos, order, _ = _plans(modules, by_table, conn, None)
        conn.rollback()
        _begin_target(conn)
        now = {name: _read_side(conn, target.media_root, infos[name].target, by_table[name], lock=True)
               for name in order}
        changed = [DriftedRecord(name, key, record.label, "target") for name in order
                   for key, record in by_table[name].items() if now[name].fingerprints.get(key) != record.after]
        if changed:
            raise RevertRefused(changed)

        work: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name in order:
            for key, record in by_table[name].items():
                work[(name, undo[record.action])].append(key)

        def row_for(name: str, action: str, key: str) -> dict[str, Any]:
            before = by_table[name][key].before or {}
            info = infos[name]
            return {c: before[c] for c in (info.insert_columns if action == "insert" else info.update_columns)}

        labels = {name: {key: r.label for key, r in by_table[name].items()} for name in order}
        steps = _steps(infos, order, work, row_for, labels)
        witnesses = _witnesses(steps, {(name, key): row for name in order for key, row in now[name].rows.items()})

        def files() -> _Files:
            plan = _Files()
            for name in order:
                for key, record in by_table[name].items():
                    current = now[name].paths.get(key)
                    if current is not None and current != record.file:
                        plan.removals.add(current)
                    if record.file is not None:
                        plan.copies.append((backup.file(backup_id, record.file), record.file, RecordRef(name, key)))
            plan.removals -= {destination for _, destination, _ in plan.copies}
            return plan

        staging = Staging(target.media_root, sync_id).open()
        try:
            copied, removed = _execute(conn, steps, files, witnesses, staging, test_import=False,
                                       should_cancel=should_cancel, progress=progress)
        except BaseException:
            conn.rollback()
            staging.discard()
            raise
        _finish_files(staging, False)
    backup.discard(backup_id)
    reverted = dict.fromkeys(ACTIONS, 0)
    for record in records:
        reverted[record.action] += 1
    return RevertResult(sync_id, reverted, [BaselineRow(r.table_name, r.key, None) for r in records], copied, removed)
