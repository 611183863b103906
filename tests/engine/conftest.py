"""Engine fixtures: the example shop's PROD/TEST pair, filled row by row and file by file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pytest
import sqlalchemy as sa

from envsync_plugin.engine.compare import EnvironmentSide


@dataclass
class Shop:
    """One environment of a test: rows go in with ``add``, files with ``file``."""

    env: EnvironmentSide
    metadata: sa.MetaData

    def add(self, table: str, *rows: Mapping[str, Any]) -> None:
        with self.env.engine.begin() as conn:
            conn.execute(self.metadata.tables[table].insert(), [dict(r) for r in rows])

    def update(self, table: str, key: Any, **values: Any) -> None:
        t = self.metadata.tables[table]
        pk = list(t.primary_key.columns)[0]
        with self.env.engine.begin() as conn:
            conn.execute(t.update().where(pk == key).values(**values))

    def delete(self, table: str, key: Any) -> None:
        t = self.metadata.tables[table]
        pk = list(t.primary_key.columns)[0]
        with self.env.engine.begin() as conn:
            conn.execute(t.delete().where(pk == key))

    def file(self, relative: str, content: bytes) -> Path:
        path = self.env.media_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    def both(self, other: Shop, table: str, *rows: Mapping[str, Any]) -> None:
        """The same rows on this side and ``other``."""
        self.add(table, *rows)
        other.add(table, *rows)


@pytest.fixture
def shops(shop_pair) -> tuple[Shop, Shop]:
    """PROD and TEST as Shops (SQLite and PostgreSQL, through shop_pair)."""
    from example_host.models import db

    prod, test = shop_pair
    return (Shop(EnvironmentSide(prod.name, prod.engine, prod.media_root), db.metadata),
            Shop(EnvironmentSide(test.name, test.engine, test.media_root), db.metadata))
