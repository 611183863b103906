"""Reading module tables: reflection, a table's read plan, rows in key order, and their fingerprints.

The comparison and the apply both read rows through here, so a fingerprint means the same thing
wherever it is computed (and in the baseline recorded after each successful synchronization).

Public helpers:

- ``reflect(conn, names=None) -> dict[str, sa.Table]``: the tables of one database (``names`` and the
  tables their foreign keys point at; ``None``: every table).
- ``TablePlan.build(tables, module, spec, columns=None)``: how a module table is read on one side: the
  selected columns (compared ones first, in the same order on both sides), the key, the owned file.
- ``select_rows(plan, side, ...)``: the ``SELECT`` of a plan in key order (``COLLATE "C"`` on
  PostgreSQL text keys, so the two sides and Python sort alike), with the module's row filter, a key
  range or a key list.
- ``select_hashes(plan, side, ...)``: PostgreSQL: each row's key and a hash of its compared values, in
  the same order (what the comparison streams between two PostgreSQL databases).
- ``raw_rows(conn, stmt, fetch)``: rows as plain tuples through the driver's cursor (PostgreSQL's
  hash streams, SQLite's joins); ``raw_rows_by_key(conn, plan, keys, side)``: PostgreSQL: by key.
- ``read_fingerprints(conn, tables, module, spec, keys, media_root, side=None) -> {key_json: fingerprint}``:
  what the apply re-checks before writing.
- ``plan.fingerprinter(media_root)``, ``plan.label(row)``, ``plan.media_path(row)``: a row's fingerprint,
  its label, its owned file's relative path.

A fingerprint is fingerprint.row_fingerprint over the table's compared columns in the table's own
column order and the owned file's digest (MISSING_FILE when the file or its folder row is missing,
UNSAFE_FILE when its path is unsafe), on the values SQLAlchemy returns for the reflected types.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..errors import EnvSyncError
from ..modules import Side, SyncModule, SyncTable
from .bulk import run_processors
from .files import UnsafePath, relative_media_path, resolve_media_path
from .fingerprint import MISSING_FILE, decimal_text, file_digest, normalize
from .types import encode_key

#: The file digest of a row whose file path is unsafe (the file is never read).
UNSAFE_FILE = "unsafe"

#: How many values go in one ``IN (...)`` lookup (well under SQLite's and PostgreSQL's parameter limits).
LOOKUP_CHUNK = 500

_LABEL_COLUMNS = ("title", "name", "caption", "label")


class SchemaMismatch(EnvSyncError):
    """Raised when a module table is missing or has other columns or another key in one environment:
    the two databases must be migrated to the same schema before they can be compared."""


def reflect(conn: sa.Connection, names: Iterable[str] | None = None, *, schema: str | None = None
            ) -> dict[str, sa.Table]:
    """The reflected tables of ``conn``'s database (or its attached ``schema``), by name: ``names`` (plus
    the tables their foreign keys point at), or every table when ``names`` is None. Raises
    SchemaMismatch naming a missing table."""
    metadata = sa.MetaData()
    if names is None:
        metadata.reflect(conn, schema=schema)
    else:
        wanted = sorted(set(names))
        existing = set(sa.inspect(conn).get_table_names(schema=schema))
        missing = [name for name in wanted if name not in existing]
        if missing:
            raise SchemaMismatch(f"The table(s) {', '.join(missing)} do not exist in this database; "
                                 "migrate both environments to the same version first.")
        metadata.reflect(conn, only=wanted, schema=schema)
    return {table.name: table for table in metadata.tables.values()}


def _texts(values: list[Any]) -> list[str]:
    # _fast_text over a column, inline: no call at all for a str or an int, one for a Decimal.
    return [v if (kind := v.__class__) is str else str(v) if kind is int else decimal_text(v) if kind is Decimal
            else normalize(v) for v in values]


def _fast_text(value: Any) -> str:
    # normalize() for the two types that make up nearly every cell, without its isinstance chain.
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is Decimal:
        return decimal_text(value)
    return normalize(value)


@dataclass(frozen=True)
class TablePlan:
    """How one module table is read on one side.

    ``columns``: the selected columns, the ``n_compared`` compared ones first, then the ignored ones; a
    file-owning row with a folder gets its folder's name as one extra value at the end.
    ``fingerprint_order``: the positions of the compared columns in this side's own column order.
    """

    module: SyncModule
    spec: SyncTable
    table: sa.Table
    columns: tuple[str, ...]
    n_compared: int
    pk: tuple[str, ...]
    folder_table: sa.Table | None  # the FileSpec's folder table, when there is one
    fingerprint_order: tuple[int, ...]

    @classmethod
    def build(cls, tables: Mapping[str, sa.Table], module: SyncModule, spec: SyncTable,
              columns: Sequence[str] | None = None) -> TablePlan:
        """The plan of ``spec`` over ``tables``; ``columns`` (another side's ``plan.columns``) forces
        the same selected columns (so rows of both sides compare as tuples) and raises SchemaMismatch
        if this side's table has other columns."""
        if spec.name not in tables:
            raise SchemaMismatch(f"The table {spec.name!r} does not exist in this database.")
        table = tables[spec.name]
        pk = tuple(column.name for column in table.primary_key.columns)
        if not pk:
            raise SchemaMismatch(f"The table {spec.name!r} has no primary key; envsync matches records by it.")
        compared = [c.name for c in table.columns if c.name not in spec.ignore]
        ignored = [c.name for c in table.columns if c.name in spec.ignore]
        mine = tuple(compared + ignored)
        if columns is not None:
            if set(columns) != set(mine):
                raise SchemaMismatch(
                    f"The table {spec.name!r} has different columns in the two environments "
                    f"({', '.join(sorted(set(columns) ^ set(mine)))}); migrate both to the same version first.")
            mine = tuple(columns)
        selected_compared = mine[: len(compared)]
        order = tuple(selected_compared.index(name) for name in compared)
        folder_table = None
        if spec.file is not None and spec.file.folder is not None:
            folder_table = tables[spec.file.folder[1]]
        return cls(module, spec, table, mine, len(compared), pk, folder_table, order)

    # --- positions in a selected row -------------------------------------------------------

    @property
    def key_of(self) -> Callable[[Sequence[Any]], Any]:
        """Row -> key value: a scalar for a one-column key, a tuple for a composite key."""
        return itemgetter(*(self.columns.index(name) for name in self.pk))

    def index(self, column: str) -> int:
        return self.columns.index(column)

    @property
    def compared_names(self) -> tuple[str, ...]:
        return self.columns[: self.n_compared]

    @property
    def string_key(self) -> bool:
        return any(is_text(self.table.c[name].type) for name in self.pk)

    def encode(self, key: Any) -> str:
        """A key value as stored in changes and the baseline (see types.encode_key)."""
        if type(key) is int:
            return str(key)  # what encode_key gives, without json's overhead on the commonest key
        return encode_key(list(key) if len(self.pk) > 1 else key)

    def decode(self, key_json: str) -> Any:
        from .types import decode_key

        value = decode_key(key_json)
        return tuple(value) if len(self.pk) > 1 else value

    # --- fingerprints ---------------------------------------------------------------------------

    @functools.cached_property
    def _fingerprint_template(self) -> tuple[Callable[..., str], tuple[int, ...]]:
        # "name\x1f{value}\x1e" per column, filled by one str.format call (C speed, no per-column loop).
        names = self.compared_names
        order = self.fingerprint_order
        template = "".join(names[i].replace("{", "{{").replace("}", "}}") + "\x1f{}\x1e" for i in order)
        return template.format, order

    def fingerprinter(self, media_root: Path) -> Callable[[Sequence[Any]], str]:
        """Row -> fingerprint, byte for byte what fingerprint.row_fingerprint gives over the compared
        columns and the owned file's digest, but as one hash over one joined string (the per-value
        ``update`` calls cost more than the hashing on tables of millions of rows)."""
        fill, order = self._fingerprint_template
        pick = itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],))
        blake2b = hashlib.blake2b
        has_file = self.spec.file is not None

        def fingerprint(row: Sequence[Any]) -> str:
            text = fill(*map(_fast_text, pick(row)))
            if has_file:
                text += "\x1dfile:" + self.file_digest(row, media_root)
            return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

        return fingerprint

    def fingerprints(self, rows: Sequence[Sequence[Any]], media_root: Path) -> list[str]:
        """The fingerprints of many rows at once (the same as ``fingerprinter``'s): column by column, so
        the common cell types are turned into text without a function call per value."""
        fill, order = self._fingerprint_template
        columns = [_texts([row[i] for row in rows]) for i in order]
        texts: Iterable[str] = map(fill, *columns) if columns else ("" for _row in rows)
        if self.spec.file is not None:
            texts = [text + "\x1dfile:" + self.file_digest(row, media_root) for text, row in zip(texts, rows, strict=True)]
        blake2b = hashlib.blake2b
        return [blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for text in texts]

    # --- owned files ------------------------------------------------------------------------------

    def media_path(self, row: Sequence[Any]) -> str | None:
        """The owned file's path relative to the media root (None: its folder row is missing);
        raises UnsafePath."""
        file = self.spec.file
        assert file is not None
        folder = row[len(self.columns)] if file.folder is not None else None
        if file.folder is not None and folder is None:
            return None
        return relative_media_path(folder, row[self.index(file.name_column)])

    def file_digest(self, row: Sequence[Any], media_root: Path) -> str:
        try:
            path = self.media_path(row)
            return MISSING_FILE if path is None else file_digest(resolve_media_path(media_root, path))
        except UnsafePath:
            return UNSAFE_FILE

    # --- labels ---------------------------------------------------------------------------------

    @functools.cached_property
    def _label_at(self) -> tuple[int, ...]:
        # The identity columns, then the first of title/name/caption/label the table has.
        at = [self.index(name) for name in self.spec.identity]
        at += [self.index(name) for name in _LABEL_COLUMNS if name in self.columns][:1]
        return tuple(dict.fromkeys(at))

    def label(self, row: Sequence[Any]) -> str:
        """A human label: the file path for a file-owning row, else identity values and the first of
        title/name/caption/label (deduplicated), else a text key itself, else "<noun> #<key>"."""
        if self.spec.file is not None:
            try:
                path = self.media_path(row)
            except UnsafePath:
                path = None
            return path or str(row[self.index(self.spec.file.name_column)])
        parts: list[str] = []
        for i in self._label_at:
            text = _text(row[i])
            if text and text not in parts:
                parts.append(text)
        if parts:
            return " — ".join(parts)
        key = self.key_of(row)
        shown = str(key) if len(self.pk) == 1 else ", ".join(map(str, key))
        # A text key (a setting's name) says what the record is; a number needs the table's noun.
        return shown if self.string_key else f"{noun(self.spec.name)} #{shown}"

    def labels(self, rows: Sequence[Sequence[Any]]) -> list[str]:
        """``label`` of many rows at once (the commonest shape, two label columns, without a call per row)."""
        at = self._label_at
        if self.spec.file is not None or len(at) != 2:
            return [self.label(row) for row in rows]
        first, second = at
        out = []
        for row in rows:
            a, b = row[first], row[second]
            a = "" if a is None else str(a)
            b = "" if b is None else str(b)
            if a and b:
                out.append(a if a == b else a + " — " + b)
            else:
                out.append(a or b or self.label(row))
        return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def is_text(type_: sa.types.TypeEngine) -> bool:
    """A string type (sorted and compared byte by byte by envsync)."""
    return isinstance(type_, sa.String | sa.Text | sa.Enum)


def noun(table_name: str) -> str:
    """A table name as the user says one record of it: "cms_pages" -> "CMS page", "categories" -> "category"."""
    words = table_name.split("_")
    last = words[-1]
    if last.endswith("ies"):
        last = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith("ss"):
        last = last[:-1]
    words[-1] = last
    # A word without vowels is an acronym (cms, seo): shout it as the UI does.
    return " ".join(w.upper() if not set(w) & set("aeiouy") else w for w in words)


def row_filter(plan: TablePlan, side: Side | None) -> sa.ColumnElement[bool] | None:
    """The module's row filter on this side: picker modules filter only once the user picked items."""
    if side is None or plan.spec.where is None:
        return None
    if plan.module.picker is not None and side.picked is None:
        return None
    return plan.spec.where(plan.table, side)


def _key_columns(plan: TablePlan, dialect: str) -> list[sa.ColumnElement[Any]]:
    columns: list[sa.ColumnElement[Any]] = []
    for name in plan.pk:
        column: sa.ColumnElement[Any] = plan.table.c[name]
        if dialect == "postgresql" and is_text(plan.table.c[name].type):
            # Byte order, as SQLite's BINARY and Python's str comparison: the merge relies on it.
            column = column.collate("C")
        columns.append(column)
    return columns


def key_condition(plan: TablePlan, dialect: str, low: Any = None, high: Any = None) -> sa.ColumnElement[bool] | None:
    """``low <= key < high`` (either end None: open), in the same order as select_rows sorts."""
    columns = _key_columns(plan, dialect)
    key = columns[0] if len(columns) == 1 else sa.tuple_(*columns)
    wrap = (lambda v: v) if len(columns) == 1 else (lambda v: sa.tuple_(*(sa.literal(x) for x in v)))
    conditions = []
    if low is not None:
        conditions.append(key >= wrap(low))
    if high is not None:
        conditions.append(key < wrap(high))
    return sa.and_(*conditions) if conditions else None


def in_values(column: sa.ColumnElement[Any], values: Sequence[Any], dialect: str | None) -> sa.ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``: one parameter however many values
    (an ``IN`` list is rendered, sent and parsed value by value, which costs more than the lookup)."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def lookup_chunk(dialect: str | None) -> int:
    """Values per batched lookup: PostgreSQL's arrays take many more than an ``IN`` list should."""
    return 10 * LOOKUP_CHUNK if dialect == "postgresql" else LOOKUP_CHUNK


def key_in(plan: TablePlan, keys: Sequence[Any], dialect: str | None = None) -> sa.ColumnElement[bool]:
    if len(plan.pk) == 1:
        return in_values(plan.table.c[plan.pk[0]], keys, dialect)
    return sa.tuple_(*(plan.table.c[name] for name in plan.pk)).in_([tuple(k) for k in keys])


def select_rows(plan: TablePlan, side: Side | None, dialect: str, *, low: Any = None, high: Any = None,
                keys: Sequence[Any] | None = None, ordered: bool = True) -> sa.Select[Any]:
    """The rows of ``plan`` on one side: its columns (plus the folder name), the row filter of ``side``
    (None: no filter), an optional key range ``[low, high)`` or key list, in key order."""
    table = plan.table
    selected: list[sa.ColumnElement[Any]] = [table.c[name] for name in plan.columns]
    from_: sa.FromClause = table
    if plan.folder_table is not None:
        fk_column, _folder_table, name_column = plan.spec.file.folder  # type: ignore[union-attr]
        # An alias, so a row filter's own subquery on the folder table is never correlated with it.
        folder = plan.folder_table.alias("envsync_folder")
        folder_pk = list(plan.folder_table.primary_key.columns)[0].name
        from_ = table.outerjoin(folder, table.c[fk_column] == folder.c[folder_pk])
        selected.append(folder.c[name_column].label("envsync_folder_name"))
    stmt = sa.select(*selected).select_from(from_)
    condition = row_filter(plan, side)
    if condition is not None:
        stmt = stmt.where(condition)
    range_condition = key_condition(plan, dialect, low, high)
    if range_condition is not None:
        stmt = stmt.where(range_condition)
    if keys is not None:
        stmt = stmt.where(key_in(plan, keys, dialect))
    if ordered:
        stmt = stmt.order_by(*_key_columns(plan, dialect))
    return stmt


#: Types PostgreSQL hashes by the value that Python's equality sees too (numbers, booleans, dates and
#: times, bytes, UUIDs, JSONB): hashed as they are, without turning them into text (the costly part).
_HASHED_AS_IS = (sa.Integer, sa.Numeric, sa.Boolean, sa.Date, sa.DateTime, sa.Time, sa.LargeBinary, sa.Uuid,
                 postgresql.JSONB)


def _hash_input(column: sa.ColumnElement[Any], type_: sa.types.TypeEngine) -> sa.ColumnElement[Any]:
    if isinstance(type_, _HASHED_AS_IS) and not is_text(type_):
        return column
    # Text, and any type not known to hash as Python compares: its text, byte for byte ("C"), so a
    # case-insensitive collation or type (citext) cannot hide a change.
    return sa.cast(column, sa.Text).collate("C")


def select_hashes(plan: TablePlan, side: Side | None, dialect: str, *, low: Any = None, high: Any = None
                  ) -> sa.Select[Any]:
    """PostgreSQL: ``(key columns..., hash)`` of the rows select_rows gives, in the same order, where
    hash = ``hash_record_extended(ROW(compared columns), 0)``: 64 bits over the values (text columns
    and other types as their text in the "C" collation, see _hash_input), so two rows with the same
    hash are, but for a 1 in 2**64 chance, equal as Python compares them, and the comparison only reads
    whole the rows whose hashes differ."""
    rows = select_rows(plan, side, dialect, low=low, high=high, ordered=False).subquery("envsync_rows")
    values = [_hash_input(rows.c[name], plan.table.c[name].type) for name in plan.compared_names]
    digest = sa.func.hash_record_extended(sa.func.row(*values), sa.literal_column("0"))
    keys = [rows.c[name] for name in plan.pk]
    order = [key.collate("C") if is_text(plan.table.c[key.name].type) else key for key in keys]
    return sa.select(*keys, digest).order_by(*order)


def raw_rows(conn: sa.Connection, stmt: sa.Select[Any], fetch: int, *, server_side: bool = True
             ) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``stmt`` as lists of up to ``fetch`` plain tuples (no Row objects: there are
    millions), through the driver's own cursor on ``conn``: a server-side one on PostgreSQL
    (``server_side=False``: a plain one, for lookups), SQLite's, which steps as it is read. The values
    are those SQLAlchemy gives: its types' result processors run where a column has one (with psycopg
    nearly none has; on SQLite, Numeric and date-time columns have one)."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.construct_params()
    for name, process in getattr(compiled, "_bind_processors", {}).items():
        if name in params:
            params[name] = process(params[name])
    if compiled.positional:
        params = [params[name] for name in compiled.positiontup or ()]
    dialect = conn.dialect
    types = [column.type for column in stmt.selected_columns]
    driver = conn.connection.driver_connection
    named = server_side and dialect.name == "postgresql"
    cursor = driver.cursor(name=f"envsync_rows_{id(stmt)}") if named else driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(compiled.string, params)
        found = [(i, type_.dialect_impl(dialect).result_processor(dialect, column[1]))
                 for i, (type_, column) in enumerate(zip(types, cursor.description or [], strict=True))]
        processors = [(i, process) for i, process in found if process is not None]
        while rows := cursor.fetchmany(fetch):
            yield run_processors(rows, processors)
    finally:
        cursor.close()


def raw_rows_by_key(conn: sa.Connection, plan: TablePlan, keys: Sequence[Any], side: Side | None = None
                    ) -> list[tuple[Any, ...]]:
    """PostgreSQL with psycopg: read_rows' rows of ``keys`` as plain tuples, in key order."""
    found: list[tuple[Any, ...]] = []
    for part in chunked(list(keys), lookup_chunk("postgresql")):
        stmt = select_rows(plan, side, "postgresql", keys=part)
        for rows in raw_rows(conn, stmt, len(part) + 1, server_side=False):
            found += rows
    return found


def stream(conn: sa.Connection, stmt: sa.Executable, chunk_size: int) -> Iterator[Sequence[sa.Row[Any]]]:
    """The rows of ``stmt`` in chunks, through a server-side cursor where the database has one, so
    memory stays flat however large the table."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(stmt)
    try:
        yield from result.partitions()
    finally:
        result.close()


def chunked(items: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def read_rows(conn: sa.Connection, plan: TablePlan, keys: Sequence[Any], side: Side | None = None
              ) -> dict[Any, sa.Row[Any]]:
    """The rows of ``keys`` (key values, not JSON) on one side, by key; batched ``IN`` lookups."""
    dialect = conn.dialect.name
    key_of = plan.key_of
    found: dict[Any, sa.Row[Any]] = {}
    for part in chunked(list(keys), lookup_chunk(dialect)):
        for row in conn.execute(select_rows(plan, side, dialect, keys=part, ordered=False)):
            found[key_of(row)] = row
    return found


def read_fingerprints(conn: sa.Connection, tables: Mapping[str, sa.Table], module: SyncModule,
                      table_spec: SyncTable, keys: Iterable[str], media_root: Path,
                      side: Side | None = None) -> dict[str, str]:
    """The current fingerprints of the records ``keys`` (JSON keys, as in Change.key) of one table on
    one environment: ``{key_json: fingerprint}``; a key absent from the result has no row (or its row
    is outside ``side``'s row filter; ``side=None`` reads it whatever the filter).

    The same fingerprints as the comparison computes, so the apply can detect a record that changed
    since the comparison, and record the baseline after success."""
    plan = TablePlan.build(tables, module, table_spec)
    by_value = {plan.decode(key_json): key_json for key_json in keys}
    fingerprint = plan.fingerprinter(media_root)
    rows = read_rows(conn, plan, list(by_value), side)
    return {by_value[key]: fingerprint(row) for key, row in rows.items() if key in by_value}
