"""The baseline: the fingerprint each synchronized record had on both sides after the last successful
synchronization, kept in ``envsync_baseline(table_name, key, fingerprint)``.

The comparison reads it to tell "the target changed since the last synchronization" (a conflict)
from "only the source changed" (a modification); the apply records it after success.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import sqlalchemy as sa

from .schema import LOOKUP_CHUNK, chunked, in_values, lookup_chunk


class BaselineReader(Protocol):
    """What the comparison needs of the baseline."""

    def fingerprints(self, table_name: str, keys: list[str]) -> dict[str, str]:
        """``{key_json: fingerprint}`` for those of ``keys`` (JSON keys) that have a baseline."""
        ...


class NoBaseline:
    """No synchronization has succeeded yet: every differing record is a modification."""

    def fingerprints(self, table_name: str, keys: list[str]) -> dict[str, str]:
        return {}


#: A table with at most this many baseline records has them read at once (one query), not looked up.
PRELOAD = 200_000


class SqlBaselineReader:
    """The baseline table over a connection. A table's baseline of up to PRELOAD records is read whole
    on first use (a record is only in it once it was synchronized: most tables have few or none);
    a larger one is read with batched ``IN`` lookups, one per comparison chunk, so memory stays bounded."""

    def __init__(self, conn: sa.Connection, baseline_table: sa.Table) -> None:
        self.conn = conn
        self.table = baseline_table
        self._whole: dict[str, dict[str, str] | None] = {}

    def fingerprints(self, table_name: str, keys: list[str]) -> dict[str, str]:
        t = self.table
        if table_name not in self._whole:
            of_table = t.c.table_name == table_name
            count = self.conn.execute(sa.select(sa.func.count()).select_from(t).where(of_table)).scalar_one()
            self._whole[table_name] = (dict(self.conn.execute(sa.select(t.c.key, t.c.fingerprint).where(of_table)).all())
                                       if count <= PRELOAD else None)
        whole = self._whole[table_name]
        if whole is not None:
            return {key: whole[key] for key in keys if key in whole}
        found: dict[str, str] = {}
        dialect = self.conn.dialect.name
        for part in chunked(keys, lookup_chunk(dialect)):
            stmt = sa.select(t.c.key, t.c.fingerprint).where(t.c.table_name == table_name,
                                                             in_values(t.c.key, part, dialect))
            found.update((key, fingerprint) for key, fingerprint in self.conn.execute(stmt))
        return found


def record_baseline(conn: sa.Connection, baseline_table: sa.Table,
                    rows: Iterable[tuple[str, str, str | None]]) -> int:
    """Upsert ``(table_name, key_json, fingerprint)`` rows into the baseline, in chunks, inside the
    caller's transaction; a ``None`` fingerprint forgets the record (it was deleted). Returns the count.

    Delete-then-insert keeps it portable across databases; the caller's transaction makes it atomic."""
    t = baseline_table
    total = 0
    batch: dict[tuple[str, str], str | None] = {}  # the last fingerprint given for a record wins

    def flush() -> None:
        by_table: dict[str, list[str]] = {}
        for table_name, key in batch:
            by_table.setdefault(table_name, []).append(key)
        for table_name, keys in by_table.items():
            conn.execute(sa.delete(t).where(t.c.table_name == table_name, t.c.key.in_(keys)))
        values = [{"table_name": n, "key": k, "fingerprint": f} for (n, k), f in batch.items() if f is not None]
        if values:
            conn.execute(sa.insert(t), values)
        batch.clear()

    for table_name, key, fingerprint in rows:
        batch[(table_name, key)] = fingerprint
        total += 1
        if len(batch) >= LOOKUP_CHUNK:
            flush()
    if batch:
        flush()
    return total
