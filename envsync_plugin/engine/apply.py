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
   (PostgreSQL inserts through COPY, everything else with executemany), each chunk in a savepoint;
   ``should_cancel`` is asked between chunks; a refused chunk is replayed record by record through
   Core to raise ApplyFailed naming the record; updates leave a table's ``ignore`` columns alone;
5. files: source files copied into the target's staging folder, a journal written, the commit,
   then the staged files moved into place and deleted rows' files removed (engine/journal.py);
   PostgreSQL sequences advanced past the inserted ids just before the commit.

A test import runs steps 1-5 up to the commit, then rolls back and drops the staged files. Rows are
held in memory between the read and the write (a few hundred bytes a record), as tuples keyed by the
decoded key value; each side's rows are read in key ranges and fingerprinted once.
"""

from __future__ import annotations

import contextlib
import gc
import operator
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import sqlalchemy as sa

from ..errors import EnvSyncError
from ..modules import SyncModule
from .backup import BackupRecord, BackupStore, FolderBackupStore
from .bulk import bind_processors, can_copy, copy_rows, run_processors
from .files import UnsafePath, resolve_media_path
from .fingerprint import row_fingerprint
from .journal import MediaEnvironment, Staging, Witness, finish_pending_file_moves, running_applies
from .schema import TablePlan, chunked, reflect, select_rows
from .types import Change, Progress, RecordRef, encode_key

__all__ = [
    "ApplyError", "ApplyFailed", "ApplyItem", "ApplyResult", "AppliedRecord", "BaselineRow", "Canceled",
    "DriftDetected", "DriftedRecord", "MediaEnvironment", "MissingReference", "ReferenceMissing",
    "RevertRefused", "RevertResult", "apply", "finish_pending_file_moves", "revert", "running_applies",
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


@dataclass
class _Work:
    """The items (ApplyItem, or BackupRecord in a revert) of one table, by key *value*: decoded once,
    so rows read from either side find their item without turning keys back into text."""

    table: _Table
    items: dict[Any, Any]
    texts: dict[Any, str]  # key value -> the key as stored (JSON, canonical); same keys, same order

    @classmethod
    def of(cls, table: _Table, entries: Iterable[Any]) -> _Work:
        plan = table.target
        entries = list(entries)
        keys = [entry.key for entry in entries]
        if len(plan.pk) == 1:
            # Integer keys are nearly all keys: decode them without the JSON parser, in bulk.
            try:
                values = list(map(int, keys))
            except ValueError:
                values = None
            if values is not None and list(map(str, values)) == keys:
                return cls(table, dict(zip(values, entries, strict=True)), dict(zip(values, keys, strict=True)))
        items: dict[Any, Any] = {}
        texts: dict[Any, str] = {}
        for entry, key in zip(entries, keys, strict=True):
            value = plan.decode(key)
            items[value] = entry
            texts[value] = plan.encode(value)
        return cls(table, items, texts)

    def ref(self, value: Any) -> RecordRef:
        return RecordRef(self.table.name, self.texts[value])

    def label(self, value: Any) -> str:
        return self.items[value].label


@dataclass
class _SideRows:
    """Rows of one side read for the items of one table, by key value: the selected row (a tuple in
    ``plan.columns`` order, plus the folder name of a file-owning row), file paths, fingerprints."""

    rows: dict[Any, Sequence[Any]]
    paths: dict[Any, str | UnsafePath]
    fingerprints: dict[Any, str]


#: Keys per range read; a run of integer keys this dense is read as ``low <= key < high``.
RANGE_CHUNK = 20_000


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


def _read(conn: sa.Connection, media_root: Path, plan: TablePlan, wanted: Mapping[Any, Any], *,
          lock: bool = False) -> _SideRows:
    """The rows of the key values ``wanted`` whatever the row filter, each fingerprinted once;
    ``lock`` row-locks them (PostgreSQL)."""
    key_of = plan.key_of
    rows: dict[Any, Sequence[Any]] = {}
    fingerprints: dict[Any, str] = {}
    for query in _key_queries(plan, conn.dialect.name, list(wanted)):
        if lock and conn.dialect.name != "sqlite":
            query = query.with_for_update(of=plan.table)
        found = conn.execute(query).all()
        keys = list(map(key_of, found))
        if not all(map(wanted.__contains__, keys)):  # rows inside a key range that no item names
            kept = [(key, row) for key, row in zip(keys, found, strict=True) if key in wanted]
            keys, found = [key for key, _ in kept], [row for _, row in kept]
        rows.update(zip(keys, found, strict=True))
        fingerprints.update(zip(keys, plan.fingerprints(found, media_root), strict=True))
    paths: dict[Any, str | UnsafePath] = {}
    if plan.spec.file is not None:
        for value, row in rows.items():
            try:
                paths[value] = plan.media_path(row)
            except UnsafePath as error:
                paths[value] = error
    return _SideRows(rows, paths, fingerprints)


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
    """One action on one table: the key values, and for an insert or update one tuple per key, in
    ``columns`` order (insert: every column; update: the SET columns)."""

    work: _Work
    action: str
    keys: list[Any]
    rows: list[tuple]
    columns: list[str]

    @property
    def table(self) -> _Table:
        return self.work.table


@dataclass
class _Files:
    copies: list[tuple[Path, str, RecordRef]] = field(default_factory=list)  # source file, destination, record
    removals: set[str] = field(default_factory=set)


def _statement(step: _Step) -> sa.Executable:
    """The Core statement of a step; its parameters are named as _core_params names them."""
    table = step.table.target.table
    if step.action == "insert":
        return table.insert()
    where = [table.c[n] == sa.bindparam(f"_key_{i}") for i, n in enumerate(step.table.pk)]
    return table.update().where(*where) if step.action == "update" else table.delete().where(*where)


def _key_names(step: _Step) -> list[str]:
    return [] if step.action == "insert" else [f"_key_{i}" for i in range(len(step.table.pk))]


def _parameter_tuples(step: _Step, keys: Sequence[Any], rows: Sequence[tuple]) -> list[tuple]:
    """One tuple per record: the step's columns, then (update, delete) the key values."""
    if step.action == "insert":
        return list(rows)
    values = keys if len(step.table.pk) > 1 else [(key,) for key in keys]
    if step.action == "delete":
        return [tuple(v) for v in values]
    return [row + tuple(v) for row, v in zip(rows, values, strict=True)]


def _core_params(step: _Step, keys: Sequence[Any], rows: Sequence[tuple]) -> list[dict[str, Any]]:
    names = step.columns + _key_names(step)
    return [dict(zip(names, values, strict=True)) for values in _parameter_tuples(step, keys, rows)]


Writer = Callable[[Sequence[Any], Sequence[tuple]], None]


def _core_writer(conn: sa.Connection, step: _Step) -> Writer:
    """Core executemany with a dict per record: the reference every faster writer must agree with."""
    statement = _statement(step)

    def write(keys: Sequence[Any], rows: Sequence[tuple]) -> None:
        conn.execute(statement, _core_params(step, keys, rows))

    return write


def _driver_writer(conn: sa.Connection, step: _Step) -> Writer | None:
    """Positional drivers (sqlite3): the compiled statement and plain tuples, without a dict per record
    and SQLAlchemy's per-record parameter processing. None where the driver takes named parameters."""
    names = step.columns + _key_names(step)
    compiled = _statement(step).compile(dialect=conn.dialect, column_keys=names)
    if not compiled.positional or sorted(compiled.positiontup or ()) != sorted(names):
        return None
    position = [names.index(name) for name in compiled.positiontup]
    reorder = position != list(range(len(names)))
    processors = bind_processors(conn, [compiled.binds[name].type for name in compiled.positiontup])
    sql = compiled.string

    def write(keys: Sequence[Any], rows: Sequence[tuple]) -> None:
        tuples = _parameter_tuples(step, keys, rows)
        if reorder:
            tuples = [tuple(values[i] for i in position) for values in tuples]
        conn.exec_driver_sql(sql, run_processors(tuples, processors))

    return write


def _copy_writer(conn: sa.Connection, step: _Step) -> Writer | None:
    """PostgreSQL with psycopg: inserts through COPY (several times faster than INSERTs, even batched)."""
    if step.action != "insert" or not can_copy(conn):
        return None
    table = step.table.target.table

    def write(keys: Sequence[Any], rows: Sequence[tuple]) -> None:
        copy_rows(conn, table, step.columns, rows)

    return write


def _writer(conn: sa.Connection, step: _Step) -> Writer:
    return _copy_writer(conn, step) or _driver_writer(conn, step) or _core_writer(conn, step)


def _run_steps(conn: sa.Connection, steps: list[_Step], should_cancel: Callable[[], bool],
               progress: Progress | None) -> None:
    totals: dict[str, int] = defaultdict(int)
    for step in steps:
        totals[step.table.module] += len(step.keys)
    done: dict[str, int] = defaultdict(int)
    # A driver error outside SQLAlchemy (COPY) is caught as well as SQLAlchemy's wrapped ones.
    dbapi_error = getattr(conn.dialect.dbapi, "Error", sa.exc.DBAPIError)
    for step in steps:
        write = _writer(conn, step)
        for start in range(0, len(step.keys), CHUNK):
            if should_cancel():
                raise Canceled()
            keys = step.keys[start:start + CHUNK]
            rows = step.rows[start:start + CHUNK]
            # A savepoint per chunk (cheap: one per few thousand rows) lets a refused chunk be undone
            # and replayed record by record, to name the record the database refused.
            savepoint = conn.begin_nested()
            try:
                write(keys, rows)
                savepoint.commit()
            except (sa.exc.DBAPIError, dbapi_error) as error:
                savepoint.rollback()
                failure = _culprit(conn, step, keys, rows, error)
                if failure is not None:
                    raise failure from error
            done[step.table.module] += len(keys)
            if progress is not None:
                progress(step.table.module, done[step.table.module], totals[step.table.module])


def _culprit(conn: sa.Connection, step: _Step, keys: Sequence[Any], rows: Sequence[tuple],
             error: Exception) -> ApplyFailed | None:
    """Replay a refused chunk a record at a time through Core (each in a savepoint) to name the record
    the database refused. None if every record went in (a fast writer's own trouble, not the data's):
    the chunk is then written."""
    statement = _statement(step)
    for key, params in zip(keys, _core_params(step, keys, rows), strict=True):
        savepoint = conn.begin_nested()
        try:
            conn.execute(statement, [params])
            savepoint.commit()
        except sa.exc.DBAPIError as row_error:
            savepoint.rollback()
            return ApplyFailed(step.work.ref(key), step.work.label(key),
                               f"the target database refused to {step.action} it: {_constraint(row_error)}")
    return None


def _constraint(error: Exception) -> str:
    return " ".join(str(getattr(error, "orig", None) or error).split())


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


def _witnesses(steps: list[_Step], before: Mapping[str, _SideRows]) -> list[Witness]:
    """A few rows whose database content the plan changes, to tell later whether it committed."""
    found: list[Witness] = []
    for step in steps:
        plan = step.table.target
        columns = list(plan.columns)
        olds = before[step.table.name].rows
        for i, key in enumerate(step.keys):
            text = step.work.texts[key]
            old_row = olds.get(key)
            old = None if old_row is None else dict(zip(columns, old_row[:len(columns)], strict=True))
            if step.action == "delete":
                names = list(old or {})
                found.append(Witness(step.table.name, text, names, row_fingerprint(old, names) if old else None, None))
            else:
                row = dict(zip(step.columns, step.rows[i], strict=True))
                after = row_fingerprint(row, step.columns)
                was = row_fingerprint(old, step.columns) if old is not None else None
                if after != was:
                    found.append(Witness(step.table.name, text, list(step.columns), was, after))
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


def _picker(positions: Sequence[int]) -> Callable[[Sequence[Any]], tuple]:
    if len(positions) == 1:
        (at,) = positions
        return lambda row: (row[at],)
    return itemgetter(*positions)


def _steps(work: Mapping[str, _Work], order: list[str], actions: Mapping[tuple[str, str], list[Any]],
           values: Callable[[str, str, list[Any]], list[tuple]]) -> list[_Step]:
    """Inserts and updates parents first, then deletes children first. ``values(table, action, keys)``
    gives the keys' row tuples in the step's column order."""
    steps = []
    for name in order:
        info = work[name].table
        for action, columns in (("insert", info.insert_columns), ("update", info.update_columns)):
            keys = actions.get((name, action), [])
            if keys:
                steps.append(_Step(work[name], action, keys, values(name, action, keys), columns))
    for name in reversed(order):
        keys = actions.get((name, "delete"), [])
        if keys:
            steps.append(_Step(work[name], "delete", keys, [], []))
    return steps


def _actions(order: list[str], work: Mapping[str, _Work], action_of: Callable[[Any], str]
             ) -> dict[tuple[str, str], list[Any]]:
    actions: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for name in order:
        for value, entry in work[name].items.items():
            actions[(name, action_of(entry))].append(value)
    return actions


def _source_snapshot(conn: sa.Connection) -> None:
    # One snapshot for every source read, so the copied rows form a consistent picture.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


# --- apply ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while an apply or revert runs: they build a few objects per record
    and free none of them before they return, so every collection pass would walk them all again for
    nothing (a third of the time of a large apply). Reference counting frees memory as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()



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
    with _gc_paused():
        return _apply(source, target, modules, items, test_import=test_import, sync_id=sync_id, backup=backup,
                      backup_dir=backup_dir, should_cancel=should_cancel, progress=progress)


def _apply(source: MediaEnvironment, target: MediaEnvironment, modules: Sequence[SyncModule],
           items: Sequence[ApplyItem], *, test_import: bool, sync_id: str | None, backup: BackupStore | None,
           backup_dir: Path | None, should_cancel: Callable[[], bool], progress: Progress | None) -> ApplyResult:
    if backup_dir is not None:
        backup = FolderBackupStore(Path(backup_dir).parent)
        sync_id = sync_id if sync_id is not None else Path(backup_dir).name
    sync_id = str(sync_id if sync_id is not None else uuid.uuid4().hex)
    backup_id = sync_id if backup is not None and not test_import else None
    by_table: dict[str, list[ApplyItem]] = defaultdict(list)
    for item in items:
        if item.action not in ACTIONS:
            raise ApplyFailed(RecordRef(item.table_name, item.key), item.label, f"unknown action {item.action!r}")
        by_table[item.table_name].append(item)

    with source.engine.connect() as sconn, sconn.begin(), target.engine.connect() as conn:
        _source_snapshot(sconn)
        infos, order, _ = _plans(modules, by_table, conn, sconn)
        work = {name: _Work.of(infos[name], by_table[name]) for name in order}
        conn.rollback()  # reflection began a transaction; the apply's own starts now, with its lock
        _begin_target(conn)
        source_read = {name: _read(sconn, source.media_root, infos[name].source, work[name].items)
                       for name in order}
        target_read = {name: _read(conn, target.media_root, infos[name].target, work[name].items, lock=True)
                       for name in order}
        _check_unsafe(order, work, source_read, target_read)
        _check_drift(order, work, source_read, target_read)
        _check_references(conn, order, work, source_read, target_read)

        def values(name: str, action: str, keys: list[Any]) -> list[tuple]:
            info = infos[name]
            positions = range(len(info.insert_columns)) if action == "insert" else \
                [info.target.index(c) for c in info.update_columns]
            return list(map(_picker(positions), map(source_read[name].rows.__getitem__, keys)))

        steps = _steps(work, order, _actions(order, work, lambda item: item.action), values)
        witnesses = _witnesses(steps, target_read)

        def files() -> _Files:
            return _apply_files(conn, source, target, order, work, source_read, target_read)

        staging = Staging(target.media_root, sync_id).open()
        try:
            if backup_id is not None:
                _save_backup(backup, backup_id, order, work, source_read, target_read, target.media_root)
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
    records: list[AppliedRecord] = []
    baseline: list[BaselineRow] = []
    for name in order:
        entries = list(work[name].items.values())
        modules = list(map(attrgetter("module"), entries))
        actions = list(map(attrgetter("action"), entries))
        keys = list(work[name].texts.values())
        for (module, action), count in Counter(zip(modules, actions, strict=True)).items():
            applied.setdefault(module, dict.fromkeys(ACTIONS, 0))[action] += count
        records.extend(_tuples(AppliedRecord, modules, repeat(name), keys, actions, map(attrgetter("label"), entries)))
        if not test_import:
            # The target now holds the source's content, so its fingerprint is the source's.
            after = map(source_read[name].fingerprints.get, work[name].items)
            baseline.extend(_tuples(BaselineRow, repeat(name), keys,
                                    [None if action == "delete" else f for action, f in zip(actions, after, strict=True)]))
    return ApplyResult(sync_id, test_import, applied, records, baseline, backup_id, copied, removed)


def _tuples(kind: type[Any], *columns: Iterable[Any]) -> Iterator[Any]:
    """NamedTuples ``kind`` from columns of values, without a call of its Python-level __new__ each."""
    return map(partial(tuple.__new__, kind), zip(*columns))  # noqa: B905 - repeat() columns are endless


def _check_drift(order: list[str], work: Mapping[str, _Work],
                 source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows]) -> None:
    drifted = []
    for name in order:
        source, target = source_read[name].fingerprints, target_read[name].fingerprints
        items = work[name].items
        if list(map(source.get, items)) == [item.source_fingerprint for item in items.values()] and \
                list(map(target.get, items)) == [item.target_fingerprint for item in items.values()]:
            continue  # the common case, without a Python step per record
        for value, item in items.items():
            if source.get(value) != item.source_fingerprint:
                drifted.append(DriftedRecord(name, work[name].texts[value], item.label, "source"))
            if target.get(value) != item.target_fingerprint:
                drifted.append(DriftedRecord(name, work[name].texts[value], item.label, "target"))
    if drifted:
        raise DriftDetected(drifted)


def _check_unsafe(order: list[str], work: Mapping[str, _Work],
                  source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows]) -> None:
    """A file name that would leave the media root stops the apply before anything is written."""
    for name in order:
        if work[name].table.target.spec.file is None:
            continue
        for value in work[name].items:
            for side in (source_read[name], target_read[name]):
                path = side.paths.get(value)
                if isinstance(path, UnsafePath):
                    raise ApplyFailed(work[name].ref(value), work[name].label(value), f"unsafe file name: {path}")


def _check_references(conn: sa.Connection, order: list[str], work: Mapping[str, _Work],
                      source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows]) -> None:
    """Every foreign key of an inserted or updated row must find its parent in the target afterwards."""
    missing = []
    for name in order:
        plan = work[name].table.target
        writes = {v: source_read[name].rows[v] for v, item in work[name].items.items() if item.action != "delete"}
        if not writes:
            continue
        for constraint in plan.table.foreign_key_constraints:
            if len(constraint.elements) != 1:
                continue  # composite foreign keys are left to the database (ApplyFailed names the record)
            element = constraint.elements[0]
            at, parent, referred = plan.index(element.parent.name), element.column.table, element.column.name
            needed = {v: row[at] for v, row in writes.items() if row[at] is not None}
            if not needed:
                continue
            added: set[Any] = set()
            removed: set[Any] = set()
            if parent.name in work:
                ref_at = work[parent.name].table.target.index(referred)
                for value, item in work[parent.name].items.items():
                    old = target_read[parent.name].rows.get(value)
                    if item.action == "delete":
                        if old is not None:
                            removed.add(old[ref_at])
                        continue
                    new = source_read[parent.name].rows[value][ref_at]
                    added.add(new)
                    if old is not None and old[ref_at] != new:
                        removed.add(old[ref_at])
            present: set[Any] = set()
            for part in chunked(sorted(set(needed.values()) - added, key=repr)):
                present.update(conn.execute(sa.select(parent.c[referred]).where(parent.c[referred].in_(part))).scalars())
            pk = [c.name for c in parent.primary_key.columns]
            for value, needs in needed.items():
                if needs in added or (needs in present and needs not in removed):
                    continue
                needs_key = encode_key(needs) if pk == [referred] else encode_key({referred: needs})
                missing.append(MissingReference(work[name].ref(value), work[name].label(value),
                                                RecordRef(parent.name, needs_key)))
    if missing:
        raise ReferenceMissing(missing)


def _save_backup(store: BackupStore, backup_id: str, order: list[str], work: Mapping[str, _Work],
                 source_read: Mapping[str, _SideRows], target_read: Mapping[str, _SideRows],
                 media_root: Path) -> None:
    """The target rows before (for a new record, only its key) and the files about to be overwritten."""
    files: dict[str, Path] = {}

    def records() -> Iterator[BackupRecord]:
        for name in order:
            columns = work[name].table.insert_columns
            n = len(columns)
            olds, paths = target_read[name].rows, target_read[name].paths
            fingerprints, texts, items = source_read[name].fingerprints, work[name].texts, work[name].items
            # Records absent from the target (new ones): only their key, in bulk.
            absent = [value not in olds for value in items]
            entries = list(compress(items.values(), absent))
            actions = list(map(attrgetter("action"), entries))
            after = map(fingerprints.get, compress(items, absent))
            yield from _tuples(BackupRecord, repeat(name), compress(texts.values(), absent), actions, repeat(None),
                               [None if action == "delete" else f for action, f in zip(actions, after, strict=True)],
                               repeat(None), map(attrgetter("label"), entries))
            for value in compress(items, map(operator.not_, absent)):
                item, old = items[value], olds[value]
                action = item.action
                after = fingerprints.get(value) if action != "delete" else None
                path = paths.get(value)
                kept = None
                if isinstance(path, str) and action != "insert":
                    current = resolve_media_path(media_root, path)
                    if current.is_file():
                        files[path] = current
                        kept = path
                yield BackupRecord(name, texts[value], action, dict(zip(columns, old[:n], strict=True)), after, kept,
                                   item.label)

    # ``files`` fills as the records are written: hand it over only once they all are.
    store.save(backup_id, list(records()), files)


def _apply_files(conn: sa.Connection, source: MediaEnvironment, target: MediaEnvironment, order: list[str],
                 work: Mapping[str, _Work], source_read: Mapping[str, _SideRows],
                 target_read: Mapping[str, _SideRows]) -> _Files:
    """Once the rows are written: where each file goes (folder names as the target has them now)."""
    plan = _Files()
    for name in order:
        info = work[name].table
        if info.target.spec.file is None:
            continue
        written = {v: item for v, item in work[name].items.items() if item.action != "delete"}
        now = _read(conn, target.media_root, info.target, written)
        for value in work[name].items:
            old, new = target_read[name].paths.get(value), now.paths.get(value)
            if isinstance(new, UnsafePath):
                raise ApplyFailed(work[name].ref(value), work[name].label(value), f"unsafe file name: {new}")
            if old is not None and old != new:
                plan.removals.add(old)
            if new is None:
                continue
            origin = resolve_media_path(source.media_root, source_read[name].paths[value])
            if origin.is_file():
                plan.copies.append((origin, new, work[name].ref(value)))
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
    with _gc_paused():
        return _revert(target, modules, backup, backup_id, sync_id=sync_id, should_cancel=should_cancel,
                       progress=progress)


def _revert(target: MediaEnvironment, modules: Sequence[SyncModule], backup: BackupStore, backup_id: str, *,
            sync_id: str | None, should_cancel: Callable[[], bool], progress: Progress | None) -> RevertResult:
    records = list(backup.records(backup_id))
    by_table: dict[str, list[BackupRecord]] = defaultdict(list)
    for record in records:
        by_table[record.table_name].append(record)
    undo = {"insert": "delete", "update": "update", "delete": "insert"}
    sync_id = str(sync_id if sync_id is not None else f"revert-{backup_id}")

    with target.engine.connect() as conn:
        infos, order, _ = _plans(modules, by_table, conn, None)
        work = {name: _Work.of(infos[name], by_table[name]) for name in order}
        conn.rollback()
        _begin_target(conn)
        now = {name: _read(conn, target.media_root, infos[name].target, work[name].items, lock=True)
               for name in order}
        changed = [DriftedRecord(name, work[name].texts[value], record.label, "target") for name in order
                   for value, record in work[name].items.items() if now[name].fingerprints.get(value) != record.after]
        if changed:
            raise RevertRefused(changed)

        def values(name: str, action: str, keys: list[Any]) -> list[tuple]:
            info = infos[name]
            columns = info.insert_columns if action == "insert" else info.update_columns
            items = work[name].items
            return [tuple((items[key].before or {})[c] for c in columns) for key in keys]

        steps = _steps(work, order, _actions(order, work, lambda record: undo[record.action]), values)
        witnesses = _witnesses(steps, now)

        def files() -> _Files:
            plan = _Files()
            for name in order:
                for value, record in work[name].items.items():
                    current = now[name].paths.get(value)
                    if current is not None and current != record.file:
                        plan.removals.add(current)
                    if record.file is not None:
                        plan.copies.append((backup.file(backup_id, record.file), record.file, work[name].ref(value)))
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
