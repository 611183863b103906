"""Benchmark of the apply engine: 100k new + 10k modified products into a target, wall time and records/s.

    .venv/bin/python benchmarks/apply_bench.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--new 100000] [--modified 10000] [--no-backup] [--repeat 3]

SQLite always; PostgreSQL with --postgres (temporary databases are created and dropped). The drift
check, reference check, backup (unless --no-backup) and the commit are all inside the timed apply.
With --repeat N each database runs N times on fresh databases and the median is printed too, with
the load average (the figures move with whatever else the machine runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envsync_plugin.engine.apply import ApplyItem, apply  # noqa: E402
from envsync_plugin.engine.backup import FolderBackupStore  # noqa: E402
from envsync_plugin.engine.schema import TablePlan, read_fingerprints, reflect  # noqa: E402
from envsync_plugin.engine.types import encode_key  # noqa: E402
from envsync_plugin.environments import create_environment_engine  # noqa: E402
from example_host.models import db  # noqa: E402
from example_host.sync_modules import MODULES  # noqa: E402

PRODUCTS = next(m for m in MODULES if m.key == "products")


@dataclass
class Env:
    engine: sa.Engine
    media_root: Path


def fill(env: Env, new: int, modified: int, *, source: bool) -> None:
    products = db.metadata.tables["products"]
    with env.engine.begin() as conn:
        conn.execute(db.metadata.tables["categories"].insert(), [{"id": i, "name": f"C{i}"} for i in range(1, 11)])
        count = new + modified if source else modified
        rows = [{"id": i, "sku": f"SKU-{i}", "name": f"Product {i}" + (" v2" if source else ""),
                 "price": Decimal(i % 1000) / 10, "category_id": i % 10 + 1} for i in range(1, count + 1)]
        for start in range(0, len(rows), 10_000):
            conn.execute(products.insert(), rows[start:start + 10_000])


def fingerprints(env: Env, keys: list[str]) -> dict[str, str]:
    with env.engine.connect() as conn:
        tables = reflect(conn, ["products"])
        return read_fingerprints(conn, tables, PRODUCTS, PRODUCTS.table("products"), keys, env.media_root)


def run(label: str, source: Env, target: Env, new: int, modified: int, backup_root: Path | None) -> float:
    fill(source, new, modified, source=True)
    fill(target, new, modified, source=False)
    keys = [encode_key(i) for i in range(1, new + modified + 1)]
    s_fp, t_fp = fingerprints(source, keys), fingerprints(target, keys)
    items = [ApplyItem("products", "products", k, "update" if k in t_fp else "insert", s_fp[k], t_fp.get(k))
             for k in keys]
    started = time.perf_counter()
    result = apply(source, target, MODULES, items, sync_id=uuid.uuid4().hex,
                   backup=FolderBackupStore(backup_root) if backup_root else None)
    seconds = time.perf_counter() - started
    assert result.counts == {"insert": new, "update": modified, "delete": 0}, result.counts
    with target.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.metadata.tables["products"])).scalar() == len(keys)
    print(f"{label:<11} {len(items):>7} records  {seconds:6.2f} s  {len(items) / seconds:>9,.0f} records/s"
          f"  (backup: {'yes' if backup_root else 'no'}, load {os.getloadavg()[0]:.2f})")
    return len(items) / seconds


def sqlite_run(args: argparse.Namespace, root: Path) -> float:
    envs = []
    for name in ("source", "target"):
        (root / name).mkdir()
        envs.append(Env(create_environment_engine(f"sqlite:///{root / name}.db"), root / name))
    for env in envs:
        db.metadata.create_all(env.engine)
    try:
        return run("SQLite", envs[0], envs[1], args.new, args.modified, None if args.no_backup else root / "backups")
    finally:
        for env in envs:
            env.engine.dispose()


def postgres_run(args: argparse.Namespace, root: Path) -> float:
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    names = [f"envsync_bench_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        envs = []
        for name in names:
            url = sa.make_url(args.postgres).set(database=name)
            env = Env(create_environment_engine(url.render_as_string(hide_password=False)), root / name)
            env.media_root.mkdir()
            db.metadata.create_all(env.engine)
            envs.append(env)
        try:
            return run("PostgreSQL", envs[0], envs[1], args.new, args.modified,
                       None if args.no_backup else root / "pg-backups")
        finally:
            for env in envs:
                env.engine.dispose()
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="an admin URL of a PostgreSQL server (databases are created and dropped)")
    parser.add_argument("--new", type=int, default=100_000)
    parser.add_argument("--modified", type=int, default=10_000)
    parser.add_argument("--no-backup", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per database; the median is printed")
    args = parser.parse_args()
    assert TablePlan  # the same read plans the comparison uses
    kinds = [("SQLite", sqlite_run)] + ([("PostgreSQL", postgres_run)] if args.postgres else [])
    rates: dict[str, list[float]] = {label: [] for label, _ in kinds}
    for _ in range(args.repeat):
        for label, runner in kinds:
            with tempfile.TemporaryDirectory() as folder:
                rates[label].append(runner(args, Path(folder)))
    if args.repeat > 1:
        for label, found in rates.items():
            print(f"{label:<11} median of {len(found)}: {statistics.median(found):>9,.0f} records/s")


if __name__ == "__main__":
    main()
