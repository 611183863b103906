"""Helpers the tests share that are not fixtures."""

from __future__ import annotations

import sqlalchemy as sa


def snapshot(side, tables: list[str] | None = None) -> dict[str, object]:
    """Every row of every shop table (or of ``tables``) and every media file's bytes hash: equal snapshots
    mean the environment is exactly as it was. envsync's own tables (which record what envsync did, in
    the instance's database) are left out unless named."""
    import hashlib

    inspector = sa.inspect(side.engine)
    names = sorted(tables if tables is not None else
                   [name for name in inspector.get_table_names() if not name.startswith("envsync_")])
    result: dict[str, object] = {}
    with side.engine.connect() as conn:
        for name in names:
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            rows = conn.execute(sa.select(table)).all()
            result[name] = sorted(repr(tuple(row)) for row in rows)
    result["__media__"] = {
        str(path.relative_to(side.media_root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(side.media_root.rglob("*")) if path.is_file()
    }
    return result
