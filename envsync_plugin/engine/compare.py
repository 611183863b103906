"""The comparison: which records of the source differ from the target, and in which tab each goes.

Pure: SQLAlchemy Core and files in, ``Change`` dataclasses out (no Flask, RQ or mail).

Public API::

    compare(source, target, modules, *, mode, picked, baseline, progress=None, chunk_size=2000,
            ranges=None) -> Iterator[Change]
    count_records(source, target, modules, *, picked, ranges=None) -> dict[module_key, int]
    count_tables(source, target, modules, *, picked, ranges=None) -> dict[table_name, int]
    split_key_ranges(side, module, table_name, parts, *, picked=None) -> list[KeyRange]
    field_diff(source, target, module, table_name, key_json, *, picked=None) -> RecordDiff
    referenced_folders(side, modules) -> set[str]

``source``/``target`` are ``EnvironmentSide`` values (name, engine, media_root; environments.Environment
has the same shape). ``picked`` maps a picker module's key to the names the user picked (missing or
None: all). ``baseline`` is a baseline.BaselineReader (SqlBaselineReader, or NoBaseline); baseline.record_baseline
(re-exported here with them) upserts it after a successful synchronization.

How it works: each module table is read once per side, in primary-key order and in chunks (server-side
cursors where the database has them), and the two sorted streams are merged, so memory stays flat
however large the tables. Rows whose compared values are equal are dropped without hashing; the rest
are gathered ``chunk_size`` at a time and resolved with batched lookups (baseline, identities,
referenced parents, children of deleted records) before their changes are yielded. See DESIGN.md,
"Semantics (contract)", for the tabs.

Progress counts rows read on both sides: ``count_records`` gives the matching totals.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import threading
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import sqlalchemy as sa

from ..modules import Side, SyncModule, SyncTable
from .baseline import BaselineReader, NoBaseline, SqlBaselineReader, record_baseline
from .files import UnsafePath, relative_media_path, resolve_media_path
from .fingerprint import normalize
from .schema import (
    TablePlan,
    chunked,
    in_values,
    is_text,
    lookup_chunk,
    noun,
    raw_rows,
    raw_rows_by_key,
    read_rows,
    reflect,
    row_filter,
    select_hashes,
    select_rows,
    stream,
)
from .types import Change, Mode, Progress, RecordRef

__all__ = [
    "BaselineReader", "EnvironmentSide", "FieldDiff", "KeyRange", "NoBaseline", "RecordDiff", "SqlBaselineReader",
    "compare", "count_records", "count_tables", "field_diff", "record_baseline", "referenced_folders", "split_key_ranges",
]


#: Source rows per slice of a SQLite join (see _Comparison._slices).
JOIN_SLICE = 25_000

#: (key, hash) rows per fetch of a PostgreSQL hash stream (see _Comparison._hashed); False: stream whole
#: rows and merge them as for any other database.
HASH_FETCH: int | bool = 10_000

#: Parent values remembered as present in the target, per foreign key (bounds the memory it takes).
PRESENT_CACHE = 100_000

#: The youngest generation's size while a comparison runs (see _fewer_collections).
GC_THRESHOLD = 100_000

#: Partitions a reading thread may run ahead of the comparison (see _prefetched).
PREFETCH_DEPTH = 2

_T = TypeVar("_T")


@dataclass
class EnvironmentSide:
    """What the engine needs of one environment."""

    name: str
    engine: sa.Engine
    media_root: Path


@dataclass(frozen=True)
class KeyRange:
    """Keys ``low <= key < high`` of one table (None: open end), in the order the comparison reads
    them. Ranges that tile the key space give, together, exactly the changes of one whole run."""

    low: Any = None
    high: Any = None


@dataclass
class FieldDiff:
    """One column of a record on both sides; ``ignored`` columns are shown but never compared."""

    column: str
    source_value: Any
    target_value: Any
    changed: bool
    ignored: bool = False


@dataclass
class RecordDiff:
    """A record field by field (and, for a file-owning row, its two files)."""

    table_name: str
    key: str
    label: str
    source_exists: bool
    target_exists: bool
    fields: list[FieldDiff]
    source_file: str | None = None  # relative to the source's media root
    target_file: str | None = None
    file_changed: bool = False

    @property
    def changed_columns(self) -> list[str]:
        return [f.column for f in self.fields if f.changed]


# What the merge found for one key, before its batch is resolved.
_NEW, _DELETED, _BOTH = "new", "deleted", "both"


_ACTIONS = {_NEW: "insert", _DELETED: "delete", _BOTH: "update"}
_TABS = {_NEW: "new", _DELETED: "deleted", _BOTH: "modified"}


class _Found:
    """One differing key on its way to a Change (a slotted class: one is made per change)."""

    __slots__ = ("kind", "key", "s_row", "t_row", "s_fp", "t_fp", "key_json", "label", "reasons", "selectable",
                 "needs")

    def __init__(self, kind: str, key: Any, s_row: Sequence[Any] | None, t_row: Sequence[Any] | None) -> None:
        self.kind, self.key, self.s_row, self.t_row = kind, key, s_row, t_row
        self.s_fp: str | None = None
        self.t_fp: str | None = None
        self.key_json = self.label = ""
        self.reasons: list[str] = []
        self.selectable = True
        self.needs: list[RecordRef] = []


_OTHER = SyncModule("envsync_other", "Not synchronized", tables=[SyncTable("envsync_other")])


class _Comparison:
    """One comparison run: both sides' connections and reflected tables, and per-table read plans."""

    def __init__(self, stack: contextlib.ExitStack, source: EnvironmentSide, target: EnvironmentSide,
                 modules: Sequence[SyncModule], mode: Mode, picked: Mapping[str, frozenset[str] | None],
                 baseline: BaselineReader, progress: Progress | None, chunk_size: int,
                 sqlite_attach: bool = True) -> None:
        self.source, self.target = source, target
        self.modules = list(modules)
        self.mode = Mode(mode)
        self.baseline = baseline
        self.progress = progress
        self.chunk_size = chunk_size
        # A stream connection and a lookup connection per side: lookups run while a stream is open.
        self.s_stream = stack.enter_context(source.engine.connect())
        self.t_stream = stack.enter_context(target.engine.connect())
        self.s_conn = stack.enter_context(source.engine.connect())
        self.t_conn = stack.enter_context(target.engine.connect())
        self.s_dialect = self.s_conn.dialect.name
        self.t_dialect = self.t_conn.dialect.name
        self.compared: dict[str, tuple[SyncModule, SyncTable]] = {
            spec.name: (module, spec) for module in self.modules for spec in module.tables}
        # The compared tables and those their foreign keys point at; children are found on demand.
        self.s_tables = reflect(self.s_conn, self.compared)
        self.t_tables = reflect(self.t_conn, self.compared)
        self._foreign_keys: dict[str, list[tuple[str, str, str]]] | None = None
        self.picked = {m.key: (frozenset(picked[m.key]) if picked.get(m.key) is not None else None)
                       for m in self.modules}
        self.s_sides = {m.key: Side(self.s_tables, self.picked[m.key]) for m in self.modules}
        self.t_sides = {m.key: Side(self.t_tables, self.picked[m.key]) for m in self.modules}
        self._plans: dict[tuple[str, str], TablePlan] = {}
        # Tables whose rows name a media folder (the FileSpec folder tables): their names must be safe.
        self.folder_columns: dict[str, str] = {}
        for module in self.modules:
            for spec in module.tables:
                if spec.file is not None and spec.file.folder is not None:
                    self.folder_columns[spec.file.folder[1]] = spec.file.folder[2]
        self.done: dict[str, int] = defaultdict(int)
        self.totals: dict[str, int] = {}
        self.table_totals: dict[str, int] = {}
        self.attached: dict[str, sa.Table] | None = None
        if sqlite_attach and self.s_dialect == "sqlite" == self.t_dialect:
            self.attached = self._attach(stack)
        self.hashed = bool(HASH_FETCH) and self.s_dialect == "postgresql" == self.t_dialect
        # Parent values known to be in the target (see _check_parents), by (table, column).
        self._present: dict[tuple[str, str], set[Any]] = defaultdict(set)

    def _attach(self, stack: contextlib.ExitStack) -> dict[str, sa.Table] | None:
        """Attach the target's SQLite file to the source's stream connection (see _joined)."""
        path = self.target.engine.url.database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        self.s_stream.exec_driver_sql("ATTACH DATABASE ? AS envsync_target", (path,))

        def detach() -> None:
            # The pooled connection is reused: leave it as it was.
            self.s_stream.rollback()
            self.s_stream.exec_driver_sql("DETACH DATABASE envsync_target")

        stack.callback(detach)
        return reflect(self.s_stream, [spec.name for _module, spec in self.compared.values()],
                       schema="envsync_target")

    # --- plans ------------------------------------------------------------------------------------

    def plan(self, side: str, table_name: str) -> TablePlan:
        """The read plan of any table on "s" or "t" (a table outside the comparison gets no filter)."""
        cached = self._plans.get((side, table_name))
        if cached is None:
            module, spec = self.compared.get(table_name, (_OTHER, SyncTable(table_name)))
            if side == "s":
                cached = TablePlan.build(self.s_tables, module, spec)
            else:
                # Compared tables must match column for column; others are only looked at.
                same = self.plan("s", table_name).columns if table_name in self.compared else None
                cached = TablePlan.build(self.t_tables, module, spec, same)
            self._plans[(side, table_name)] = cached
        return cached

    def side_filter(self, side: str, table_name: str) -> Side | None:
        if table_name not in self.compared:
            return None
        key = self.compared[table_name][0].key
        return (self.s_sides if side == "s" else self.t_sides)[key]

    # --- the merge ----------------------------------------------------------------------------------

    def _partitions(self, conn: sa.Connection, stmt: sa.Select[Any], module_key: str,
                    counted: bool = True) -> Iterator[Sequence[Any]]:
        for part in stream(conn, stmt, self.chunk_size):
            if counted:
                self._advance(module_key, len(part))
            yield part

    def _advance(self, module_key: str, rows: int) -> None:
        self.done[module_key] += rows
        if self.progress is not None:
            self.progress(module_key, self.done[module_key], self.totals.get(module_key, 0))

    def table_changes(self, module: SyncModule, spec: SyncTable, key_range: KeyRange) -> Iterator[Change]:
        if self.attached is not None:
            found = self._joined(module, spec, key_range)
        elif self.hashed and spec.file is None:
            found = self._hashed(module, spec, key_range)
        else:
            found = self._merged(module, spec, key_range)
        batch: list[_Found] = []
        for item in found:
            batch.append(item)
            if len(batch) >= self.chunk_size:
                yield from self.resolve(module, spec, batch)
                batch = []
        if batch:
            yield from self.resolve(module, spec, batch)

    def _merged(self, module: SyncModule, spec: SyncTable, key_range: KeyRange) -> Iterator[_Found]:
        """The keys that differ, from the two sides' key-ordered streams merged here."""
        s_plan, t_plan = self.plan("s", spec.name), self.plan("t", spec.name)
        s_stmt = select_rows(s_plan, self.s_sides[module.key], self.s_dialect, low=key_range.low, high=key_range.high)
        t_stmt = select_rows(t_plan, self.t_sides[module.key], self.t_dialect, low=key_range.low, high=key_range.high)
        s_iter = itertools.chain.from_iterable(self._partitions(self.s_stream, s_stmt, module.key))
        t_iter = itertools.chain.from_iterable(self._partitions(self.t_stream, t_stmt, module.key))
        return self._merge(spec, s_plan, s_iter, t_iter)

    def _merge(self, spec: SyncTable, s_plan: TablePlan, s_iter: Iterator[Sequence[Any]],
               t_iter: Iterator[Sequence[Any]]) -> Iterator[_Found]:
        """The keys that differ between two key-ordered row iterators of one table."""
        key_of = s_plan.key_of
        n = s_plan.n_compared
        new_only = self.mode is Mode.NEW
        # File-owning rows are always resolved: their file bytes are content the row values don't show.
        resolve_all = spec.file is not None
        whole_row = n == len(s_plan.columns) and not resolve_all
        identity_at = [s_plan.index(name) for name in spec.identity]
        nothing: Any = None

        s = next(s_iter, nothing)
        t = next(t_iter, nothing)
        # Hot loop: one key comparison and one tuple comparison per row; everything else is batched.
        while s is not None and t is not None:
            ks = key_of(s)
            kt = key_of(t)
            if ks == kt:
                if new_only:
                    # Only a different record under the same key concerns "only new records".
                    if identity_at and any(s[i] != t[i] for i in identity_at):
                        yield _Found(_BOTH, ks, s, t)
                elif resolve_all or (s != t if whole_row else s[:n] != t[:n]):
                    yield _Found(_BOTH, ks, s, t)
                s = next(s_iter, nothing)
                t = next(t_iter, nothing)
            elif ks < kt:
                yield _Found(_NEW, ks, s, None)
                s = next(s_iter, nothing)
            else:
                if not new_only:
                    yield _Found(_DELETED, kt, None, t)
                t = next(t_iter, nothing)
        while s is not None:
            yield _Found(_NEW, key_of(s), s, None)
            s = next(s_iter, nothing)
        while t is not None and not new_only:
            yield _Found(_DELETED, key_of(t), None, t)
            t = next(t_iter, nothing)

    def _slices(self, module: SyncModule, spec: SyncTable, key_range: KeyRange) -> list[tuple[KeyRange, int]]:
        """``key_range`` cut into slices of about JOIN_SLICE source rows, each with its share of the
        table's progress total: the SQLite join reads only differing rows, so without slices a large
        table's progress would jump from nothing to everything."""
        total = self.table_totals.get(spec.name, 0)
        if total <= 2 * JOIN_SLICE:
            return [(key_range, total)]
        plan = self.plan("s", spec.name)
        ordered = select_rows(plan, self.s_sides[module.key], "sqlite", low=key_range.low, high=key_range.high,
                              ordered=False).subquery("envsync_keys")
        keys = [ordered.c[name] for name in plan.pk]
        bounds = self._integer_bounds(plan, keys, total // 2 // JOIN_SLICE, key_range.low)
        if bounds is None:
            bounds = self._row_bounds(plan, keys)
        edges = [key_range.low, *bounds, key_range.high]
        parts = [KeyRange(low, high) for low, high in itertools.pairwise(edges)]
        share = total // len(parts)
        return [(part, share if i < len(parts) - 1 else total - share * (len(parts) - 1))
                for i, part in enumerate(parts)]

    def _integer_bounds(self, plan: TablePlan, keys: list[sa.ColumnElement[Any]], parts: int, start: Any
                        ) -> list[int] | None:
        """Slice bounds of a one-column integer key: ``parts`` equal spans between its smallest and
        largest source value (two index look-ups; counting rows to place exact bounds took a sort of
        the whole table). None for any other key."""
        if len(keys) != 1 or not isinstance(plan.table.c[plan.pk[0]].type, sa.Integer):
            return None
        # ORDER BY ... LIMIT 1 rather than min()/max(): SQLite walks the key's index only for these.
        low, high = (self.s_stream.execute(sa.select(keys[0]).order_by(order).limit(1)).scalar()
                     for order in (keys[0], keys[0].desc()))
        if type(low) is not int or type(high) is not int:
            return None  # no rows, or values SQLite's type affinity kept as text or real: count rows
        step = -(-(high - low + 1) // max(parts, 1))
        # The smallest key is a bound too (the slice below it holds only the target's keys), as with
        # bounds every JOIN_SLICE rows.
        return [bound for bound in range(low, high + 1, step) if start is None or bound > start]

    def _row_bounds(self, plan: TablePlan, keys: list[sa.ColumnElement[Any]]) -> list[Any]:
        """Slice bounds every JOIN_SLICE source rows (any key)."""
        numbered = sa.select(*keys, sa.func.row_number().over(order_by=keys).label("envsync_n")).subquery()
        bounds_query = sa.select(*(numbered.c[name] for name in plan.pk)).where(
            numbered.c.envsync_n % JOIN_SLICE == 0).order_by(*(numbered.c[name] for name in plan.pk))
        return [row[0] if len(plan.pk) == 1 else tuple(row) for row in self.s_stream.execute(bounds_query)]

    def _joined(self, module: SyncModule, spec: SyncTable, key_range: KeyRange) -> Iterator[_Found]:
        """The keys that differ, found by SQLite itself: the target file is attached to the source's
        stream connection and each table is joined with its twin on the key (as sqldiff does), so only
        differing rows ever reach Python. Same rows, same plans, same results as _merged.

        (Not in a reading thread as _hashed: sqlite3 takes the GIL back for every row it returns, and
        the two threads' hand-overs cost more than the overlap gains.)"""
        assert self.attached is not None
        s_plan = self.plan("s", spec.name)
        a_plan = TablePlan.build(self.attached, module, spec, s_plan.columns)
        a_side = Side(self.attached, self.picked[module.key])
        width = len(s_plan.columns) + (s_plan.folder_table is not None)  # a folder's name comes last
        pk_at = [s_plan.index(name) for name in s_plan.pk]
        key_of = s_plan.key_of
        identity_at = [s_plan.index(name) for name in spec.identity]

        def queries(part: KeyRange) -> tuple[sa.Select[Any], sa.Select[Any] | None]:
            s_sub = select_rows(s_plan, self.s_sides[module.key], "sqlite", low=part.low, high=part.high,
                                ordered=False).subquery("envsync_s")
            t_sub = select_rows(a_plan, a_side, "sqlite", low=part.low, high=part.high,
                                ordered=False).subquery("envsync_t")
            s_cols, t_cols = list(s_sub.c), list(t_sub.c)
            on = sa.and_(*(s_cols[i] == t_cols[i] for i in pk_at))

            def differs(indexes: Iterable[int]) -> sa.ColumnElement[bool]:
                # BINARY: a column's own NOCASE collation must not hide a change.
                return sa.or_(*(sa.collate(s_cols[i], "BINARY").is_distinct_from(sa.collate(t_cols[i], "BINARY"))
                                if is_text(s_plan.table.c[s_plan.columns[i]].type)
                                else s_cols[i].is_distinct_from(t_cols[i]) for i in indexes))

            if self.mode is Mode.NEW:
                changed = differs(identity_at) if identity_at else sa.false()
            elif spec.file is not None:
                changed = sa.true()  # file bytes are content too: every pair is resolved
            else:
                changed = differs(range(s_plan.n_compared))
            both = (sa.select(*s_cols, *t_cols).select_from(s_sub.outerjoin(t_sub, on))
                    .where(sa.or_(t_cols[pk_at[0]].is_(None), changed)).order_by(*(s_cols[i] for i in pk_at)))
            if self.mode is Mode.NEW:
                return both, None
            gone = (sa.select(*t_cols).select_from(t_sub.outerjoin(s_sub, on))
                    .where(s_cols[pk_at[0]].is_(None)).order_by(*(t_cols[i] for i in pk_at)))
            return both, gone

        def read() -> Iterator[tuple[str, Any]]:
            for part, share in self._slices(module, spec, key_range):
                both, gone = queries(part)
                for rows in raw_rows(self.s_stream, both, self.chunk_size):
                    yield _BOTH, rows
                if gone is not None:
                    for rows in raw_rows(self.s_stream, gone, self.chunk_size):
                        yield _DELETED, rows
                yield "share", share

        for kind, rows in read():
            if kind == "share":
                # Only differing rows were read: progress moves by this slice's share of both sides' rows.
                self._advance(module.key, rows)
            elif kind is _BOTH:
                for row in rows:
                    s_row, t_row = row[:width], row[width:]
                    if t_row[pk_at[0]] is None:
                        yield _Found(_NEW, key_of(s_row), s_row, None)
                    else:
                        yield _Found(_BOTH, key_of(s_row), s_row, t_row)
            else:
                for row in rows:
                    yield _Found(_DELETED, key_of(row), None, row)

    def _hashed(self, module: SyncModule, spec: SyncTable, key_range: KeyRange) -> Iterator[_Found]:
        """The keys that differ between two PostgreSQL databases: each side streams only ``(key, hash of
        its compared values)`` in key order, computed by the server (schema.select_hashes), read in large
        fetches by a thread per side; windows of keys both streams have fully read are compared as sets,
        and only the rows whose hashes differ are read whole (batched lookups, plain tuples) and merged as
        _merged merges. A hash can make rows look different when Python finds them equal (then the whole
        rows say so); equal hashes mean, but for a 1 in 2**64 chance, rows Python finds equal."""
        s_plan, t_plan = self.plan("s", spec.name), self.plan("t", spec.name)
        s_side, t_side = self.s_sides[module.key], self.t_sides[module.key]
        streams = [_prefetched(raw_rows(conn, select_hashes(plan, side, "postgresql", low=key_range.low,
                                                            high=key_range.high), int(HASH_FETCH)))
                   for conn, plan, side in ((self.s_stream, s_plan, s_side), (self.t_stream, t_plan, t_side))]
        composite = len(s_plan.pk) > 1
        new_only = self.mode is Mode.NEW
        bufs: list[list[tuple[Any, ...]]] = [[], []]
        open_ = [True, True]
        key = itemgetter(0)
        try:
            while True:
                for side in (0, 1):
                    # Top a buffer up once it is half read, so windows stay about HASH_FETCH keys wide.
                    if open_[side] and len(bufs[side]) < int(HASH_FETCH) // 2:
                        rows = next(streams[side], None)
                        if rows is None:
                            open_[side] = False
                        else:
                            self._advance(module.key, len(rows))
                            if composite:
                                rows = [(tuple(r[:-1]), r[-1]) for r in rows]
                            bufs[side] = bufs[side] + rows if bufs[side] else rows
                s_buf, t_buf = bufs
                if not s_buf and not t_buf:
                    return
                # The window: keys up to the last one both sides have read (a closed side has read them all).
                ends = [buf[-1][0] for buf, more in ((s_buf, open_[0]), (t_buf, open_[1])) if more and buf]
                if ends:
                    high = min(ends)
                    i, j = bisect_right(s_buf, high, key=key), bisect_right(t_buf, high, key=key)
                else:
                    i, j = len(s_buf), len(t_buf)
                s_part, t_part = s_buf[:i], t_buf[:j]
                bufs = [s_buf[i:], t_buf[j:]]
                if s_part == t_part:
                    continue
                s_set, t_set = set(s_part), set(t_part)  # set - set reuses the hashes the sets hold
                s_keys = sorted(k for k, _h in s_set - t_set)
                t_keys = sorted(k for k, _h in t_set - s_set)
                if new_only:
                    t_keys = sorted(set(t_keys).intersection(s_keys))  # a record only the target has is no concern
                s_rows = raw_rows_by_key(self.s_conn, s_plan, s_keys, s_side)
                t_rows = raw_rows_by_key(self.t_conn, t_plan, t_keys, t_side)
                yield from self._merge(spec, s_plan, iter(s_rows), iter(t_rows))
        finally:
            for stream_ in streams:
                stream_.close()  # stops its reading thread and closes its cursor

    # --- resolving a batch ----------------------------------------------------------------------

    def resolve(self, module: SyncModule, spec: SyncTable, batch: list[_Found]) -> Iterator[Change]:
        s_plan, t_plan = self.plan("s", spec.name), self.plan("t", spec.name)
        S, T = self.source.name, self.target.name
        what = noun(spec.name)
        # Fingerprints a batch at a time, column by column (see TablePlan.fingerprints).
        with_s = [f for f in batch if f.s_row is not None]
        for f, fp in zip(with_s, s_plan.fingerprints([f.s_row for f in with_s], self.source.media_root), strict=True):
            f.s_fp = fp
        with_t = [f for f in batch if f.t_row is not None]
        for f, fp in zip(with_t, t_plan.fingerprints([f.t_row for f in with_t], self.target.media_root), strict=True):
            f.t_fp = fp

        check_paths = spec.file is not None or spec.name in self.folder_columns
        encode = s_plan.encode
        mode_all = self.mode is Mode.ALL
        kept: list[_Found] = []
        for found in batch:
            if mode_all and found.kind is _BOTH and found.s_fp == found.t_fp:
                continue  # the values differed only in their Python types (e.g. across databases)
            found.key_json = encode(found.key)
            if check_paths:
                self._check_paths(s_plan, found)
            kept.append(found)
        if not kept:
            return

        base = self.baseline.fingerprints(spec.name, [f.key_json for f in kept])
        identity_at = [s_plan.index(name) for name in spec.identity]
        taken = self._identities_in_target(t_plan, [f for f in kept if f.kind == _NEW]) if identity_at else {}

        out: list[_Found] = []
        for found in kept:
            known = base.get(found.key_json)
            if found.kind is _BOTH:
                s_ident = tuple(found.s_row[i] for i in identity_at)  # type: ignore[index]
                t_ident = tuple(found.t_row[i] for i in identity_at)  # type: ignore[index]
                if s_ident != t_ident:
                    found.reasons.append(
                        f"A different {what} ({_describe(spec.identity, t_ident)} on {T}, "
                        f"{_describe(spec.identity, s_ident)} on {S}) has the same ID {_show(found.key)}.")
                elif self.mode is Mode.NEW or found.s_fp == found.t_fp:
                    continue
                if known is not None and known != found.t_fp:
                    found.reasons.append(f"It was changed on {T} after the last synchronization; "
                                         f"applying it would overwrite that change.")
            elif found.kind is _NEW:
                if identity_at:
                    ident = tuple(found.s_row[i] for i in identity_at)  # type: ignore[index]
                    other = taken.get(ident)
                    if other is not None:
                        found.reasons.append(
                            f"The same {what} ({_describe(spec.identity, ident)}) already exists on {T} "
                            f"under another ID ({_show(other)}).")
                if known is not None:
                    found.reasons.append(f"It was deleted on {T} after the last synchronization.")
            elif known is not None and known != found.t_fp:
                found.reasons.append(f"It was changed on {T} after the last synchronization; "
                                     f"deleting it would lose that change.")
            out.append(found)

        writes = [f for f in out if f.kind != _DELETED]
        if writes:
            self._check_parents(s_plan, writes)
            if module.media_references is not None:
                self._check_media(module, s_plan, writes)
        deletions = [f for f in out if f.kind == _DELETED]
        if deletions:
            self._check_children(t_plan, deletions)

        # Labels a batch at a time too: a deleted record is labelled from the target's row.
        with_s = [f for f in out if f.s_row is not None]
        for f, label in zip(with_s, s_plan.labels([f.s_row for f in with_s]), strict=True):
            f.label = label
        gone = [f for f in out if f.s_row is None]
        for f, label in zip(gone, t_plan.labels([f.t_row for f in gone]), strict=True):
            f.label = label
        for found in out:
            reasons = found.reasons
            yield Change(module=module.key, table_name=spec.name, key=found.key_json,
                         tab="conflict" if reasons else _TABS[found.kind], action=_ACTIONS[found.kind],
                         label=found.label, source_fingerprint=found.s_fp, target_fingerprint=found.t_fp,
                         reason=" ".join(reasons) if reasons else None, selectable=found.selectable,
                         needs=_unique(found.needs) if found.needs else [])

    def _check_paths(self, plan: TablePlan, found: _Found) -> None:
        """A file or folder name that could leave the media root makes the change unselectable."""
        rows = [(r, side) for r, side in ((found.s_row, self.source.name), (found.t_row, self.target.name))
                if r is not None]
        for row, side_name in rows:
            try:
                if plan.spec.file is not None:
                    plan.media_path(row)
                elif plan.spec.name in self.folder_columns:
                    # Checked as a folder holding a file, so the message speaks of the folder name.
                    relative_media_path(row[plan.index(self.folder_columns[plan.spec.name])], "file")
            except UnsafePath as exc:
                found.reasons.append(f"It cannot be synchronized safely: on {side_name}, {exc}.")
                found.selectable = False
                return

    def _identities_in_target(self, t_plan: TablePlan, new: list[_Found]) -> dict[tuple[Any, ...], Any]:
        """{identity: target key} for the new records whose identity the target holds under another key
        (batched ``IN`` lookups over the whole target table, whatever the row filter: unique
        constraints span the table)."""
        identity = t_plan.spec.identity
        at = [t_plan.index(name) for name in identity]
        wanted = sorted({tuple(f.s_row[i] for i in at) for f in new}, key=repr)  # type: ignore[index]
        table = t_plan.table
        pk = [table.c[name] for name in t_plan.pk]
        columns = [table.c[name] for name in identity]
        found: dict[tuple[Any, ...], Any] = {}
        dialect = self.t_dialect
        for part in chunked(wanted, lookup_chunk(dialect)):
            if len(columns) == 1:
                condition = in_values(columns[0], [v[0] for v in part], dialect)
            else:
                condition = sa.tuple_(*columns).in_(list(part))
            for row in self.t_conn.execute(sa.select(*columns, *pk).where(condition)):
                key = row[len(columns)] if len(pk) == 1 else tuple(row[len(columns):])
                found[tuple(row[: len(columns)])] = key
        return found

    def _check_parents(self, s_plan: TablePlan, writes: list[_Found]) -> None:
        """Every parent a written row points at (its foreign keys) must be in the target or come with
        this comparison (then it goes in ``needs``); else the change is an unselectable conflict."""
        T = self.target.name
        for fk in s_plan.table.foreign_key_constraints:
            if len(fk.columns) != 1:
                continue  # composite foreign keys: not used by any module table yet
            column = list(fk.columns)[0].name
            parent_name = fk.referred_table.name
            parent_column = fk.elements[0].column.name
            at = s_plan.index(column)
            values = {f.s_row[at] for f in writes} - {None}  # type: ignore[index]
            if not values or parent_name not in self.t_tables:
                continue
            # Parents found once are not looked up again (the same categories come back batch after batch).
            known = self._present[(parent_name, parent_column)]
            present = values & known
            if len(present) < len(values):
                found = self._values_in(self.t_conn, self.t_tables[parent_name], parent_column, values - present, None)
                present |= found
                if len(known) < PRESENT_CACHE:
                    known |= found
            missing = values - present
            if not missing:
                continue
            brought: dict[Any, Any] = {}
            if parent_name in self.compared:
                brought = self._keys_by_value(self.s_conn, self.plan("s", parent_name), parent_column, missing,
                                              self.side_filter("s", parent_name))
            absent = missing - set(brought)
            labels = self._parent_labels(parent_name, parent_column, absent) if absent else {}
            p_plan = self.plan("s", parent_name)
            for f in writes:
                value = f.s_row[at]  # type: ignore[index]
                if value in brought:
                    f.needs.append(RecordRef(parent_name, p_plan.encode(brought[value])))
                elif value in absent:
                    f.selectable = False
                    f.reasons.append(
                        f"It uses the {noun(parent_name)} {labels.get(value, _show(value))}, which is not on {T} "
                        f"and does not come with this comparison{self._hint(parent_name)}.")

    def _hint(self, table_name: str) -> str:
        """What the user can do about a missing record of ``table_name``."""
        if table_name not in self.compared:
            return ""
        module = self.compared[table_name][0]
        if module.picker is not None and self.picked[module.key] is not None:
            return f" (pick its {module.picker.label.rstrip('s')} too)"
        return ""

    def _parent_labels(self, parent_name: str, parent_column: str, values: set[Any]) -> dict[Any, str]:
        """Labels of missing parents as the source has them ("ID 12 (mobile_app/x.png)")."""
        plan = self.plan("s", parent_name)
        if plan.pk != (parent_column,):
            return {}
        rows = read_rows(self.s_conn, plan, sorted(values, key=repr))
        labels = {key: plan.label(row) for key, row in rows.items()}
        # A label that only repeats the key ("gallery image #3" of a table outside the comparison) says nothing.
        return {key: f"{_show(key)} ({label})" for key, label in labels.items()
                if label not in (_show(key), f"{noun(parent_name)} #{_show(key)}")}

    def _values_in(self, conn: sa.Connection, table: sa.Table, column: str, values: set[Any],
                   condition: sa.ColumnElement[bool] | None) -> set[Any]:
        present: set[Any] = set()
        dialect = conn.dialect.name
        for part in chunked(sorted(values, key=repr), lookup_chunk(dialect)):
            stmt = sa.select(table.c[column]).where(in_values(table.c[column], part, dialect))
            if condition is not None:
                stmt = stmt.where(condition)
            present.update(conn.execute(stmt).scalars())
        return present

    def _keys_by_value(self, conn: sa.Connection, plan: TablePlan, column: str, values: set[Any],
                       side: Side | None) -> dict[Any, Any]:
        """{column value: key} of the rows of ``plan`` (with ``side``'s row filter) holding ``values``."""
        table = plan.table
        condition = row_filter(plan, side)
        found: dict[Any, Any] = {}
        dialect = conn.dialect.name
        for part in chunked(sorted(values, key=repr), lookup_chunk(dialect)):
            stmt = sa.select(table.c[column], *(table.c[name] for name in plan.pk)).where(
                in_values(table.c[column], part, dialect))
            if condition is not None:
                stmt = stmt.where(condition)
            for row in conn.execute(stmt):
                found[row[0]] = row[1] if len(plan.pk) == 1 else tuple(row[1:])
        return found

    def _check_media(self, module: SyncModule, s_plan: TablePlan, writes: list[_Found]) -> None:
        """Files named inside values (the module's media_references hook) must be in the target's media
        folder or come with this comparison (then the image goes in ``needs``); else a conflict."""
        assert module.media_references is not None
        S, T = self.source.name, self.target.name
        wanted: dict[int, list[str]] = {}
        all_paths: set[str] = set()
        for i, f in enumerate(writes):
            values = dict(zip(s_plan.columns, f.s_row, strict=False))  # type: ignore[arg-type]
            paths = [str(p) for p in module.media_references(s_plan.spec.name, values)]
            if paths:
                wanted[i] = paths
                all_paths.update(paths)
        if not all_paths:
            return
        missing: set[str] = set()
        unsafe: set[str] = set()
        for path in all_paths:
            try:
                if not resolve_media_path(self.target.media_root, path).is_file():
                    missing.add(path)
            except UnsafePath:
                unsafe.add(path)
        brought = self._files_in_source(missing) if missing else {}
        for i, paths in wanted.items():
            f = writes[i]
            for path in paths:
                if path in unsafe:
                    f.reasons.append(f"It points at {path!r}, which is outside the media folder.")
                elif path in brought:
                    f.needs.append(brought[path])
                elif path in missing:
                    folder = path.split("/")[0] if "/" in path else None
                    hint = f" (pick the folder “{folder}”)" if folder else ""
                    f.reasons.append(f"It points at {path}, which is not on {T} and does not come with this "
                                     f"comparison from {S}{hint}.")

    def _files_in_source(self, paths: set[str]) -> dict[str, RecordRef]:
        """{relative path: record} of the file-owning rows of this comparison (row filter applied) that
        own one of ``paths``."""
        found: dict[str, RecordRef] = {}
        names = sorted({p.rsplit("/", 1)[-1] for p in paths})
        for table_name, (module, spec) in self.compared.items():
            if spec.file is None:
                continue
            plan = self.plan("s", table_name)
            key_of = plan.key_of
            for part in chunked(names):
                stmt = select_rows(plan, self.s_sides[module.key], self.s_dialect, ordered=False)
                stmt = stmt.where(plan.table.c[spec.file.name_column].in_(part))
                for row in self.s_conn.execute(stmt):
                    try:
                        path = plan.media_path(row)
                    except UnsafePath:
                        continue
                    if path in paths:
                        found[path] = RecordRef(table_name, plan.encode(key_of(row)))
        return found

    def _check_children(self, t_plan: TablePlan, deletions: list[_Found]) -> None:
        """A deleted record's children in the target must go too: children that this comparison deletes
        or points elsewhere go in ``needs``; any other child makes the deletion an unselectable conflict."""
        parent_name = t_plan.spec.name
        T = self.target.name
        keys = {f.key for f in deletions}
        by_key = {f.key: f for f in deletions}
        for child_name, column, referred in self._referrers(parent_name):
            if (referred,) != t_plan.pk:
                continue
            if child_name not in self.t_tables:
                # Only the child itself: its parents here stay the ones the plans were built on.
                self.t_tables[child_name] = reflect(self.t_conn, [child_name])[child_name]
            child = self.t_tables[child_name]
            # Children in the target, and those of them this comparison reads (row filter applied).
            rows = self._child_rows(child, column, keys, None)
            if not rows:
                continue
            compared_keys: set[Any] = set()
            source_rows: dict[Any, Any] = {}
            if child_name in self.compared:
                c_plan = self.plan("t", child_name)
                s_plan = self.plan("s", child_name)
                condition = row_filter(c_plan, self.side_filter("t", child_name))
                compared_keys = set(self._child_rows(child, column, keys, condition))
                source_rows = read_rows(self.s_conn, s_plan, sorted(compared_keys, key=repr),
                                        self.side_filter("s", child_name))
            blocking: dict[Any, int] = defaultdict(int)
            for child_key, parent_key in rows.items():
                if child_key in compared_keys:
                    s_row = source_rows.get(child_key)
                    # Deleted too, or updated to point elsewhere: it goes with this deletion.
                    if s_row is None or s_row[s_plan.index(column)] != parent_key:
                        by_key[parent_key].needs.append(RecordRef(child_name, s_plan.encode(child_key)))
                        continue
                blocking[parent_key] += 1
            for parent_key, count in blocking.items():
                f = by_key[parent_key]
                f.selectable = False
                f.reasons.append(
                    f"{count} {noun(child_name)}{'s' if count > 1 else ''} on {T} still "
                    f"{'use' if count > 1 else 'uses'} it and {'are' if count > 1 else 'is'} not deleted "
                    f"by this comparison{self._hint(child_name)}.")

    def _referrers(self, parent_name: str) -> list[tuple[str, str, str]]:
        """(child table, its column, the parent column) of every one-column foreign key of the
        target's database pointing at ``parent_name`` (read once per comparison)."""
        if self._foreign_keys is None:
            self._foreign_keys = defaultdict(list)
            for (_schema, table_name), fks in sa.inspect(self.t_conn).get_multi_foreign_keys().items():
                for fk in fks:
                    if len(fk["constrained_columns"]) == 1:
                        self._foreign_keys[fk["referred_table"]].append(
                            (table_name, fk["constrained_columns"][0], fk["referred_columns"][0]))
        return self._foreign_keys.get(parent_name, [])

    def _child_rows(self, child: sa.Table, column: str, parent_keys: set[Any],
                    condition: sa.ColumnElement[bool] | None) -> dict[Any, Any]:
        """{child key: parent key} of the target's rows of ``child`` pointing at ``parent_keys`` (a
        child table without a primary key is keyed by row number: it only counts)."""
        pk = list(child.primary_key.columns)
        found: dict[Any, Any] = {}
        dialect = self.t_dialect
        for part in chunked(sorted(parent_keys, key=repr), lookup_chunk(dialect)):
            stmt = sa.select(*pk, child.c[column]).where(in_values(child.c[column], part, dialect))
            if condition is not None:
                stmt = stmt.where(condition)
            for row in self.t_conn.execute(stmt):
                key = row[0] if len(pk) == 1 else tuple(row[: len(pk)]) if pk else len(found)
                found[key] = row[len(pk)]
        return found


_collections_lock = threading.Lock()
_collections_users = 0
_collections_saved: tuple[int, ...] | None = None


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Let the garbage collector's youngest generation grow to GC_THRESHOLD objects while comparisons
    run: they allocate millions of short-lived, acyclic row tuples, and at the default threshold (700)
    the collector's passes over them took a third of a PostgreSQL comparison. Cycles are still
    collected, only less often; the previous thresholds come back when the last comparison ends."""
    global _collections_users, _collections_saved
    with _collections_lock:
        if _collections_users == 0:
            _collections_saved = gc.get_threshold()
            gc.set_threshold(max(GC_THRESHOLD, _collections_saved[0]), *_collections_saved[1:])
        _collections_users += 1
    try:
        yield
    finally:
        with _collections_lock:
            _collections_users -= 1
            if _collections_users == 0 and _collections_saved is not None:
                gc.set_threshold(*_collections_saved)


def _prefetched(parts: Iterator[_T], depth: int | None = None) -> Iterator[_T]:
    """``parts`` read by a thread of its own, up to ``depth`` (PREFETCH_DEPTH) items ahead: the database
    works (and lets go of the GIL) while the caller works on the previous items. Memory stays bounded
    by ``depth``; an error in the thread is raised here; closing this generator stops the thread."""
    items: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth or PREFETCH_DEPTH)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for part in parts:
                if not put((True, part)):
                    return
            put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed over to the reading side
            put((False, exc))
        finally:
            close = getattr(parts, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="envsync-compare-reader", daemon=True)
    thread.start()
    try:
        while True:
            more, item = items.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _describe(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{name} {value!r}" if isinstance(value, str) else f"{name} {value}"
                     for name, value in zip(names, values, strict=True))


def _show(key: Any) -> str:
    return ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def _unique(refs: list[RecordRef]) -> list[RecordRef]:
    return list(dict.fromkeys(refs))


def _tables_to_compare(modules: Sequence[SyncModule], ranges: Mapping[str, KeyRange] | None
                       ) -> Iterator[tuple[SyncModule, SyncTable, KeyRange]]:
    for module in modules:
        for spec in module.tables:
            if ranges is None:
                yield module, spec, KeyRange()
            elif spec.name in ranges:
                yield module, spec, ranges[spec.name]


def compare(source: EnvironmentSide, target: EnvironmentSide, modules: Sequence[SyncModule], *, mode: Mode,
            picked: Mapping[str, frozenset[str] | None], baseline: BaselineReader,
            progress: Progress | None = None, chunk_size: int = 2000,
            ranges: Mapping[str, KeyRange] | None = None, sqlite_attach: bool = True,
            totals: Mapping[str, int] | None = None) -> Iterator[Change]:
    """The changes that would make ``target`` look like ``source`` for ``modules`` (parents first, as
    the modules declare their tables), one ``Change`` at a time.

    ``ranges``: None compares every table of ``modules``; ``{table_name: KeyRange}`` compares only those
    tables, each within its key range (to split a large table across jobs; see split_key_ranges).
    ``progress(module_key, rows_read, rows_total)`` is called once per module with 0 rows read as soon
    as the totals are known, then once per chunk read. ``totals``: count_tables' result for the same
    arguments, when the caller has it (else the tables are counted here, for progress only).
    ``sqlite_attach``: when both sides are SQLite files, SQLite joins the two tables on the key itself
    (the target file attached read-side) and only differing rows reach Python; False streams and merges
    in Python as for any other database. Both give the same changes.
    Raises schema.SchemaMismatch if a table differs between the two databases.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_fewer_collections())
        run = _Comparison(stack, source, target, modules, mode, picked, baseline, progress, chunk_size,
                          sqlite_attach)
        if progress is not None:
            run.table_totals = dict(totals) if totals is not None else _count(run, modules, ranges)
            run.totals = _module_totals(modules, run.table_totals)
            for key, total in run.totals.items():
                progress(key, 0, total)
        for module, spec, key_range in _tables_to_compare(modules, ranges):
            yield from run.table_changes(module, spec, key_range)


def _count(run: _Comparison, modules: Sequence[SyncModule], ranges: Mapping[str, KeyRange] | None) -> dict[str, int]:
    """{table name: rows compare() reads on both sides}."""
    totals: dict[str, int] = {}
    for module, spec, key_range in _tables_to_compare(modules, ranges):
        for side, conn, sides, dialect in (("s", run.s_conn, run.s_sides, run.s_dialect),
                                           ("t", run.t_conn, run.t_sides, run.t_dialect)):
            stmt = select_rows(run.plan(side, spec.name), sides[module.key], dialect,
                               low=key_range.low, high=key_range.high, ordered=False)
            rows = conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one()
            totals[spec.name] = totals.get(spec.name, 0) + rows
    return totals


def _module_totals(modules: Sequence[SyncModule], table_totals: Mapping[str, int]) -> dict[str, int]:
    return {module.key: sum(table_totals.get(spec.name, 0) for spec in module.tables) for module in modules}


def count_tables(source: EnvironmentSide, target: EnvironmentSide, modules: Sequence[SyncModule], *,
                 picked: Mapping[str, frozenset[str] | None],
                 ranges: Mapping[str, KeyRange] | None = None) -> dict[str, int]:
    """{table name: rows compare() will read on both sides} (row filters and ranges applied): what
    its ``totals`` take."""
    with contextlib.ExitStack() as stack:
        run = _Comparison(stack, source, target, modules, Mode.ALL, picked, NoBaseline(), None, 1, False)
        return _count(run, modules, ranges)


def count_records(source: EnvironmentSide, target: EnvironmentSide, modules: Sequence[SyncModule], *,
                  picked: Mapping[str, frozenset[str] | None],
                  ranges: Mapping[str, KeyRange] | None = None) -> dict[str, int]:
    """{module key: rows compare() will read on both sides} (row filters and ranges applied): the
    totals of its progress."""
    return _module_totals(modules, count_tables(source, target, modules, picked=picked, ranges=ranges))


def split_key_ranges(side: EnvironmentSide, module: SyncModule, table_name: str, parts: int, *,
                     picked: frozenset[str] | None = None) -> list[KeyRange]:
    """``parts`` key ranges of about the same number of ``side``'s rows that together cover every key
    (the first and last are open-ended, so keys only the other side has are covered too)."""
    spec = module.table(table_name)
    with side.engine.connect() as conn:
        tables = reflect(conn, [table_name] + ([spec.file.folder[1]] if spec.file and spec.file.folder else []))
        plan = TablePlan.build(tables, module, spec)
        dialect = conn.dialect.name
        stmt = select_rows(plan, Side(tables, picked), dialect)
        total = conn.execute(sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
        step = -(-total // max(parts, 1)) if total else 0
        bounds: list[Any] = []
        for offset in range(step, total, step or 1):
            row = conn.execute(stmt.limit(1).offset(offset)).first()
            if row is not None:
                bounds.append(plan.key_of(row))
    edges = [None, *bounds, None]
    return [KeyRange(low, high) for low, high in itertools.pairwise(edges)]


def field_diff(source: EnvironmentSide, target: EnvironmentSide, module: SyncModule, table_name: str,
               key_json: str) -> RecordDiff:
    """One record field by field on both sides (on demand, for the review's diff view), read whatever
    the module's row filter."""
    spec = module.table(table_name)
    names = [table_name] + ([spec.file.folder[1]] if spec.file and spec.file.folder else [])
    rows: list[tuple[TablePlan, Sequence[Any] | None]] = []
    s_plan: TablePlan | None = None
    for env in (source, target):
        with env.engine.connect() as conn:
            plan = TablePlan.build(reflect(conn, names), module, spec, s_plan.columns if s_plan else None)
            s_plan = s_plan or plan
            key = plan.decode(key_json)
            rows.append((plan, read_rows(conn, plan, [key]).get(key)))
    (s_plan, s_row), (t_plan, t_row) = rows
    fields = []
    for i, name in enumerate(s_plan.columns):
        s_value = s_row[i] if s_row is not None else None
        t_value = t_row[i] if t_row is not None else None
        ignored = i >= s_plan.n_compared
        changed = (s_row is None) != (t_row is None) or normalize(s_value) != normalize(t_value)
        fields.append(FieldDiff(name, s_value, t_value, changed and not ignored, ignored))
    diff = RecordDiff(table_name, key_json, (s_plan.label(s_row) if s_row is not None else
                                             t_plan.label(t_row) if t_row is not None else key_json),
                      s_row is not None, t_row is not None, fields)
    if spec.file is not None:
        digests = []
        for plan, row, env, attr in ((s_plan, s_row, source, "source_file"), (t_plan, t_row, target, "target_file")):
            if row is None:
                digests.append(None)
                continue
            try:
                setattr(diff, attr, plan.media_path(row))
            except UnsafePath:
                pass
            digests.append(plan.file_digest(row, env.media_root))
        diff.file_changed = digests[0] != digests[1]
    return diff


def referenced_folders(side: EnvironmentSide, modules: Iterable[SyncModule]) -> set[str]:
    """The media folders the rows of ``modules`` point at through their media_references hooks (system
    config's mobile-app JSONs -> {"mobile_app"}): what the settings page pre-selects."""
    folders: set[str] = set()
    with side.engine.connect() as conn:
        for module in modules:
            if module.media_references is None:
                continue
            names = [spec.name for spec in module.tables]
            tables = reflect(conn, names + [s.file.folder[1] for s in module.tables if s.file and s.file.folder])
            for spec in module.tables:
                plan = TablePlan.build(tables, module, spec)
                stmt = select_rows(plan, Side(tables, None), conn.dialect.name)
                for part in stream(conn, stmt, 2000):
                    for row in part:
                        for path in module.media_references(spec.name, dict(zip(plan.columns, row, strict=False))):
                            head, _, rest = str(path).partition("/")
                            if rest:
                                folders.add(head)
    return folders
