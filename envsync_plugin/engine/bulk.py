"""Writing many rows at once, faster than Core's executemany with a dict per row.

``insert_rows(conn, table, columns, rows)`` inserts tuples (in ``columns`` order): through COPY on
PostgreSQL with psycopg, else through the statement SQLAlchemy compiles for the dialect, executed by
the driver with plain parameters (no per-row parameter processing by SQLAlchemy). With
``process=False`` the values are taken as they are (already what the driver takes: str, int, bool,
None, JSON as text); otherwise each column goes through its type's bind processor first, as Core would.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import sqlalchemy as sa


def bind_processors(conn: sa.Connection, types: Sequence[sa.types.TypeEngine]) -> list[tuple[int, Callable]]:
    """(position, bind processor) of the types that have one on this dialect."""
    dialect = conn.dialect
    found = [(i, type_.dialect_impl(dialect).bind_processor(dialect)) for i, type_ in enumerate(types)]
    return [(i, process) for i, process in found if process is not None]


def run_processors(tuples: list[tuple], found: list[tuple[int, Callable]]) -> list[tuple]:
    """The processors SQLAlchemy would have run, column by column: bind processors before writing
    (Decimal to float on SQLite, ...), or result processors after reading (schema.raw_rows)."""
    if not found or not tuples:
        return tuples
    columns = list(zip(*tuples, strict=True))
    for i, process in found:
        columns[i] = list(map(process, columns[i]))
    return list(zip(*columns, strict=True))


def can_copy(conn: sa.Connection) -> bool:
    """PostgreSQL with psycopg: COPY is there."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def copy_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple], *,
              process: bool = True) -> bool:
    """COPY ``rows`` into ``table`` on PostgreSQL with psycopg; False (nothing done) elsewhere."""
    if not can_copy(conn):
        return False
    preparer = conn.dialect.identifier_preparer
    sql = (f"COPY {preparer.format_table(table)} ({', '.join(preparer.quote(c) for c in columns)}) "
           "FROM STDIN")
    values = list(rows)
    if process:
        values = run_processors(values, bind_processors(conn, [table.c[name].type for name in columns]))
    if not conn.in_transaction():
        conn.begin()  # the driver's own cursor: SQLAlchemy would not know there is anything to commit
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
        write_row = copy.write_row
        for row in values:
            write_row(row)
    return True


def insert_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple], *,
                process: bool = True) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in the caller's transaction."""
    if not rows or copy_rows(conn, table, columns, rows, process=process):
        return
    names = list(columns)
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    order = list(compiled.positiontup) if compiled.positional else names
    values: list[Any] = list(rows)
    if order != names:
        at = [names.index(name) for name in order]
        values = [tuple(row[i] for i in at) for row in values]
    if process:
        values = run_processors(values, bind_processors(conn, [compiled.binds[name].type for name in order]))
    if not compiled.positional:
        values = [dict(zip(order, row, strict=True)) for row in values]
    conn.exec_driver_sql(compiled.string, values)
