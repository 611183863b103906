"""Benchmark of the comparison: the job end to end, and the engine alone, on two environments of N products.

    .venv/bin/python benchmarks/compare_bench.py [--records 1000000] [--sizes 100000,1000000] [--repeat 3]
        [--runs job,workers,engine,bare,floor] [--workers 2] [--redis redis://...] [--postgres postgresql+psycopg://postgres@127.0.0.1/postgres]

Builds PROD and TEST (SQLite files, cached under --workdir) with the example shop's tables: N products
in 1,000 categories, a few hundred CMS pages, sliders, gallery images (with files) and mobile-app
settings; TEST is PROD with ~8% of the products changed (4% modified, 2% new, 2% deleted). Each run
is a fresh subprocess, so its peak RSS (resource.getrusage maxrss) is its own.

- job: what a worker does for a comparison started on the settings page (all modules, all records,
  PROD -> TEST): the example shop's app, service.start_comparison, then the job itself (counts, the
  comparison, every change stored in envsync's tables, the tab counts, the e-mail, suppressed) timed.
- engine: compare() alone with a no-op progress callback (as the job passes one), changes counted.
- bare: compare() without a progress callback.
- workers: the job end to end with --workers (default 2) real worker processes serving the queue, so
  that the products table is cut in key ranges they share: timed from the start of the comparison to
  its "ready". Peak RSS is the largest worker's or work horse's.
- floor: what no Python work can make cheaper, each part timed alone: reading what tells the differing
  rows apart (SQLite's joins of each module table with its twin, rows dropped; on PostgreSQL both
  sides' (key, hash) streams, as the engine reads them), storing the job's changes with the job's own
  store, and the engine's fingerprints of as many rows as the changes hold; their sum beside the
  reference is the best ratio any job of this design could reach.

Beside it: ``sqldiff --summary`` (Debian sqlite3-tools) on the same two files, and with --postgres the
same runs between two PostgreSQL databases beside ``COPY (SELECT * FROM products) TO STDOUT`` of both
read into a null sink. With --repeat N every figure is the median of N runs (each run followed by the
reference, so both see the same load). Prints figures and the load average; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHANGED_SHARE = 0.04  # modified; as many again new and deleted, half each: ~8% in all


def _rows(n: int, seed: int, side: str):
    """Product rows of one side: TEST = PROD with 4% renamed, 2% missing (new on PROD), 2% extra (deleted)."""
    rnd = random.Random(seed)
    for i in range(1, n + 1):
        r = rnd.random()
        if side == "test" and r < 0.02:
            continue  # only on PROD: new
        name = f"Product {i} " + "x" * (i % 23)
        if side == "test" and r < 0.02 + CHANGED_SHARE:
            name += " (edited on TEST)"
        yield (i, f"SKU-{i:08d}", name, f"{(i % 9973) / 100:.2f}", 1 + i % 1000)
    if side == "test":
        for i in range(n + 1, n + 1 + int(n * 0.02)):
            yield (i, f"SKU-{i:08d}", f"Product {i}", "1.00", 1)  # only on TEST: deleted


def _small_tables(side: str) -> dict[str, list[dict]]:
    other = side == "test"
    return {
        "categories": [{"id": i, "name": f"Category {i}"} for i in range(1, 1001)],
        "cms_pages": [{"id": i, "slug": f"page-{i}", "title": f"Page {i}" + (" (TEST)" if other and i % 10 == 0 else ""),
                       "body": "Lorem ipsum " * 20} for i in range(1, 301)],
        "gallery_folders": [{"id": 1, "name": "mobile_app"}, {"id": 2, "name": "summer"}],
        "gallery_images": [{"id": i, "folder_id": 1 + i % 2, "filename": f"image-{i}.png"} for i in range(1, 201)],
        "sliders": [{"id": i, "name": f"Slider {i}"} for i in range(1, 11)],
        "slides": [{"id": i, "slider_id": 1 + i % 10, "image_id": 1 + (i + (1 if other and i % 5 == 0 else 0)) % 200,
                    "position": i, "caption": f"Slide {i}"} for i in range(1, 101)],
        "system_settings": [{"key": f"mobile_app.screen{i}", "value": json.dumps({"banner_image": f"mobile_app/image-{2 * (i % 100) + 2}.png"})}
                            for i in range(1, 51)] + [{"key": f"shop.setting{i}", "value": str(i)} for i in range(1, 51)],
    }


def _media(root: Path, side: str) -> None:
    for i in range(1, 201):
        path = root / ("mobile_app" if i % 2 else "summer") / f"image-{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((b"png %d " % i) * 100 + (b"TEST" if side == "test" and i % 40 == 0 else b""))


def build_sqlite(workdir: Path, n: int) -> tuple[Path, Path]:
    """PROD and TEST SQLite files of ``n`` products (cached: built once per size)."""
    from example_host.models import db

    folder = workdir / f"sqlite-{n}"
    prod, test = folder / "prod.db", folder / "test.db"
    if (folder / "done").exists():
        return prod, test
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for side, path in (("prod", prod), ("test", test)):
        engine = sa.create_engine(f"sqlite:///{path}")
        db.metadata.create_all(engine)
        with engine.begin() as conn:
            for table, rows in _small_tables(side).items():
                conn.execute(db.metadata.tables[table].insert(), rows)
        engine.dispose()
        import sqlite3

        raw = sqlite3.connect(path)
        raw.execute("PRAGMA journal_mode=OFF")
        raw.execute("PRAGMA synchronous=OFF")
        raw.executemany("INSERT INTO products (id, sku, name, price, category_id) VALUES (?, ?, ?, ?, ?)",
                        _rows(n, 42, side))
        raw.commit()
        raw.execute("ANALYZE")
        raw.close()
        _media(folder / f"media-{side}", side)
    (folder / "done").touch()
    return prod, test


def build_postgres(admin_url: str, n: int) -> tuple[str, str]:
    """Two new PostgreSQL databases with the same content as build_sqlite (dropped by the caller)."""
    from example_host.models import db

    urls = []
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    for side in ("prod", "test"):
        name = f"envsync_bench_{side}_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        engine = sa.create_engine(url)
        db.metadata.create_all(engine)
        with engine.begin() as conn:
            for table, rows in _small_tables(side).items():
                conn.execute(db.metadata.tables[table].insert(), rows)
        raw = engine.raw_connection()
        try:
            cursor = raw.driver_connection.cursor()
            with cursor.copy("COPY products (id, sku, name, price, category_id) FROM STDIN") as copy:
                for row in _rows(n, 42, side):
                    copy.write_row(row)
            raw.driver_connection.commit()
            raw.driver_connection.autocommit = True
            cursor.execute("VACUUM ANALYZE products")
        finally:
            raw.close()
        engine.dispose()
        urls.append(url)
    admin.dispose()
    return urls[0], urls[1]


def drop_postgres(admin_url: str, urls: list[str]) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for url in urls:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def child(prod_url: str, test_url: str, media: str, progress: str = "none") -> None:
    """One comparison in this (fresh) process; prints its figures as JSON. ``progress="noop"`` passes a
    progress callback that does nothing, as real jobs pass one (it costs the count queries and, on
    SQLite, the join's key slices)."""
    import resource

    from envsync_plugin.engine.baseline import NoBaseline
    from envsync_plugin.engine.compare import EnvironmentSide, compare
    from envsync_plugin.engine.types import Mode
    from envsync_plugin.environments import create_environment_engine
    from example_host.sync_modules import MODULES

    media_root = Path(media)
    prod = EnvironmentSide("PROD", create_environment_engine(prod_url), media_root / "media-prod")
    test = EnvironmentSide("TEST", create_environment_engine(test_url), media_root / "media-test")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts: dict[str, int] = {}
    started = time.perf_counter()
    callback = (lambda _module, _done, _total: None) if progress == "noop" else None
    for change in compare(prod, test, MODULES, mode=Mode.ALL, picked={"gallery_folders": None}, baseline=NoBaseline(),
                          progress=callback):
        counts[change.tab] = counts.get(change.tab, 0) + 1
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "counts": counts, "rss_kib": rss, "rss_before_kib": rss_before}))


def _bench_app(prod_url: str, test_url: str, media: str, redis_url: str):
    """The example shop's PROD app over the two environments, with envsync's tables in a database file
    of their own (PROD's file stays as sqldiff reads it), and the FLASK_* variables that give a worker
    process the same configuration; returns (app, instance folder, variables)."""
    from example_host import create_app

    instance = Path(media) / f"instance-{uuid.uuid4().hex[:8]}"
    media_root = Path(media)
    config = {
        "ENVSYNC_ENVIRONMENTS": {"PROD": {"database_url": prod_url, "media_root": str(media_root / "media-prod")},
                                 "TEST": {"database_url": test_url, "media_root": str(media_root / "media-test")}},
        "ENVSYNC_CURRENT_ENVIRONMENT": "PROD",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance}/envsync.db",
        "ENVSYNC_QUEUE_NAME": f"envsync-bench-{uuid.uuid4().hex[:8]}",
        "MAIL_SUPPRESS_SEND": True,
    }
    if redis_url:
        config["ENVSYNC_REDIS_URL"] = redis_url
    variables = {"EXAMPLE_HOST_INSTANCE_PATH": str(instance)}  # the embedded Redis lives there too
    variables.update({f"FLASK_{key}": value if isinstance(value, str) else json.dumps(value)
                      for key, value in config.items()})
    os.environ.update(variables)
    return create_app(config), instance, variables


def _start_bench_comparison():
    from envsync_plugin import service

    service.init_db()
    return service.start_comparison("prod-to-test", "all",
                                    ["cms_pages", "sliders", "gallery_folders", "products", "system_config"],
                                    {"gallery_folders": ["mobile_app", "summer"]}, user="bench@example.com")


def _stored(comparison_id: int) -> tuple[int, str]:
    import sqlalchemy as sa

    from envsync_plugin import service
    from envsync_plugin.extension import current_envsync

    changes = current_envsync.tables.changes
    with service.connection() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(changes).where(
            changes.c.comparison_id == comparison_id)).scalar_one()
    return stored, service.get_comparison(comparison_id).status.value


def _cleanup(instance: Path, redis_url: str) -> None:
    if not redis_url:
        from envsync_plugin.queue import embedded_redis_for

        embedded_redis_for(instance).stop()
    shutil.rmtree(instance, ignore_errors=True)


def child_job(prod_url: str, test_url: str, media: str, redis_url: str) -> None:
    """The comparison end to end as a worker runs it: the example shop's app, a comparison started
    through the service (all modules, all records, PROD → TEST) and its job (counts, compare, stored
    changes, tab counts, the e-mail) run here; prints its figures as JSON. No worker serves the queue,
    so the comparison is one job, as with one worker."""
    import resource

    from envsync_plugin.service.comparisons import run_comparison

    app, instance, _variables = _bench_app(prod_url, test_url, media, redis_url)
    try:
        with app.app_context():
            info = _start_bench_comparison()
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            counts = run_comparison(info.id)
            seconds = time.perf_counter() - started
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            stored, status = _stored(info.id)
    finally:
        _cleanup(instance, redis_url)
    print(json.dumps({"seconds": seconds, "counts": counts or {}, "stored": stored, "status": status,
                      "rss_kib": rss, "rss_before_kib": rss_before}))


def child_workers(prod_url: str, test_url: str, media: str, workers: int, redis_url: str) -> None:
    """The comparison end to end with ``workers`` real worker processes (``flask envsync worker``)
    serving the queue: from the start on the settings page to the comparison marked ready (its parts
    shared by the workers); prints its figures as JSON (peak RSS: the largest worker or work horse)."""
    import resource
    import signal

    from envsync_plugin import service

    app, instance, variables = _bench_app(prod_url, test_url, media, redis_url)
    processes = []
    try:
        with app.app_context():
            service.init_db()
            env = {**os.environ, **variables}
            processes = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "example_host", "envsync", "worker"],
                                          env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True) for _ in range(workers)]
            deadline = time.monotonic() + 60
            while len(service.workers()) < workers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{workers} workers did not start within 60 s")
                time.sleep(0.1)
            started = time.time()
            info = _start_bench_comparison()
            while service.get_comparison(info.id).status.value not in ("ready", "failed"):
                time.sleep(0.05)
            info = service.get_comparison(info.id)
            seconds = info.finished_at.timestamp() - started
            stored, status = _stored(info.id)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait()
        _cleanup(instance, redis_url)
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "counts": info.counts or {}, "stored": stored, "status": status,
                      "rss_kib": rss, "rss_before_kib": 0}))


def _floor_sqlite_joins(prod_url: str, test_url: str) -> float:
    """Seconds of SQLite's own joins of each module table with its twin (the engine's two joins, written
    plainly; rows fetched by sqlite3 and dropped)."""
    import sqlite3

    from example_host.sync_modules import MODULES

    db = sqlite3.connect(sa.make_url(prod_url).database)
    db.execute("ATTACH DATABASE ? AS t", (sa.make_url(test_url).database,))
    seconds = 0.0
    for module in MODULES:
        for spec in module.tables:
            info = db.execute(f'PRAGMA main.table_info("{spec.name}")').fetchall()
            columns = [f's."{row[1]}"' for row in info]
            on = " AND ".join(f's."{row[1]}" = o."{row[1]}"' for row in info if row[5])
            differs = " OR ".join(f's."{row[1]}" IS NOT o."{row[1]}"' for row in info if not row[5])
            first_pk = next(f'"{row[1]}"' for row in info if row[5])
            # Names from the benchmark's own files (PRAGMA table_info), quoted.
            both = (f'SELECT {", ".join(columns)}, o.* FROM main."{spec.name}" s LEFT JOIN t."{spec.name}" o '  # noqa: S608
                    f"ON {on} WHERE o.{first_pk} IS NULL OR {differs or '0'} ORDER BY s.{first_pk}")
            gone = (f'SELECT o.* FROM t."{spec.name}" o LEFT JOIN main."{spec.name}" s ON {on} '  # noqa: S608
                    f"WHERE s.{first_pk} IS NULL ORDER BY o.{first_pk}")
            started = time.perf_counter()
            for query in (both, gone):
                cursor = db.execute(query)
                while cursor.fetchmany(2000):
                    pass
            seconds += time.perf_counter() - started
    db.close()
    return seconds


def _floor_hash_streams(prod_url: str, test_url: str) -> float:
    """Seconds of reading each module table's ``(key, hash)`` stream from both PostgreSQL databases, as
    the engine reads them (a thread per side, taken in turn), and nothing else."""
    import itertools

    from envsync_plugin.engine.compare import HASH_FETCH, _prefetched
    from envsync_plugin.engine.schema import TablePlan, raw_rows, reflect, select_hashes
    from envsync_plugin.environments import create_environment_engine
    from envsync_plugin.modules import Side
    from example_host.sync_modules import MODULES

    engines = [create_environment_engine(url) for url in (prod_url, test_url)]
    seconds = 0.0
    with engines[0].connect() as prod, engines[1].connect() as test:
        names = [spec.name for module in MODULES for spec in module.tables]
        sides = [(conn, reflect(conn, names)) for conn in (prod, test)]
        for module in MODULES:
            for spec in module.tables:
                started = time.perf_counter()
                streams = [_prefetched(raw_rows(conn, select_hashes(TablePlan.build(tables, module, spec),
                                                                    Side(tables, None), "postgresql"), int(HASH_FETCH)))
                           for conn, tables in sides]
                for _pair in itertools.zip_longest(*streams):
                    pass
                seconds += time.perf_counter() - started
    for engine in engines:
        engine.dispose()
    return seconds


def child_floor(prod_url: str, test_url: str, media: str) -> None:
    """The parts of the job that no Python can make cheaper, each timed alone, to show how close to its
    reference any job of this design can come: reading what tells the differing rows apart (SQLite's
    own joins; on PostgreSQL the two hash streams), storing the job's changes (the job's own store), and
    fingerprinting the rows they hold (the engine's own column-by-column fingerprints); prints their
    seconds as JSON."""
    from envsync_plugin.engine.baseline import NoBaseline
    from envsync_plugin.engine.compare import EnvironmentSide, compare
    from envsync_plugin.engine.schema import TablePlan, reflect
    from envsync_plugin.engine.types import Mode
    from envsync_plugin.environments import create_environment_engine
    from envsync_plugin.service.comparisons import STORE_BATCH, _change_row, _store
    from example_host.sync_modules import MODULES

    sqlite = sa.make_url(prod_url).get_backend_name() == "sqlite"
    read = _floor_sqlite_joins(prod_url, test_url) if sqlite else _floor_hash_streams(prod_url, test_url)

    media_root = Path(media)
    prod = EnvironmentSide("PROD", create_environment_engine(prod_url), media_root / "media-prod")
    test = EnvironmentSide("TEST", create_environment_engine(test_url), media_root / "media-test")
    changes = list(compare(prod, test, MODULES, mode=Mode.ALL, picked={"gallery_folders": None}, baseline=NoBaseline()))

    products = next(m for m in MODULES if m.key == "products")
    with prod.engine.connect() as conn:
        plan = TablePlan.build(reflect(conn, ["products"]), products, products.table("products"))
        wanted = sum((c.source_fingerprint is not None) + (c.target_fingerprint is not None) for c in changes)
        rows = [tuple(row) for row in conn.execute(sa.select(*(plan.table.c[name] for name in plan.columns))
                                                   .order_by(plan.table.c.id).limit(wanted))]
    started = time.perf_counter()
    plan.fingerprints(rows, prod.media_root)
    fingerprints = time.perf_counter() - started

    app, instance, _variables = _bench_app(prod_url, test_url, media, "")
    try:
        with app.app_context():
            info = _start_bench_comparison()
            stored_rows = [_change_row(info.id, change) for change in changes]
            started = time.perf_counter()
            for at in range(0, len(stored_rows), STORE_BATCH):
                _store(stored_rows[at:at + STORE_BATCH])
            store = time.perf_counter() - started
    finally:
        _cleanup(instance, "")
    print(json.dumps({"read": read, "read_what": "SQLite's joins" if sqlite else "both hash streams", "store": store,
                      "fingerprints": fingerprints, "fingerprinted": len(rows), "changes": len(changes)}))


def run_child(prod_url: str, test_url: str, media: Path, progress: str = "none") -> dict:
    """One run in a fresh process: ``progress`` "none" or "noop" for compare() alone, "job:<redis URL or
    empty>" for the comparison job end to end, "workers:<N>:<redis URL or empty>" for it with N workers."""
    out = subprocess.run([sys.executable, __file__, "--child", prod_url, test_url, str(media), progress],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_sqldiff(prod: Path, test: Path) -> float | None:
    binary = shutil.which("sqldiff")
    if binary is None:
        return None
    started = time.perf_counter()
    subprocess.run([binary, "--summary", str(prod), str(test)], check=True, capture_output=True)
    return time.perf_counter() - started


def time_copy(urls: list[str]) -> float:
    """COPY (SELECT * FROM products) TO STDOUT of each database, read into a null sink."""
    import psycopg

    total = 0.0
    for url in urls:
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
            started = time.perf_counter()
            with cursor.copy("COPY (SELECT * FROM products) TO STDOUT") as copy:
                for _block in copy:
                    pass
            total += time.perf_counter() - started
    return total


def median_runs(repeat: int, compare: Callable[[], dict], reference: Callable[[], float | None]
                ) -> tuple[dict, float | None]:
    """The comparison's figures and the reference's time, each the median of ``repeat`` runs taken in
    turn (peak RSS: the largest)."""
    runs, references = [], []
    for _ in range(repeat):
        runs.append(compare())
        references.append(reference())
    figures = dict(runs[0])
    figures["seconds"] = statistics.median(r["seconds"] for r in runs)
    figures["rss_kib"] = max(r["rss_kib"] for r in runs)
    known = [r for r in references if r is not None]
    return figures, (statistics.median(known) if known else None)


def report(label: str, n: int, figures: dict, reference_name: str, reference: float | None) -> None:
    products_rows = n * 2  # both sides, about
    seconds = figures["seconds"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    line = (f"{label:<12} {n:>9,} products  compare {seconds:7.2f} s  {products_rows / seconds:>10,.0f} rows/s  "
            f"peak RSS {figures['rss_kib'] / 1024:7.1f} MiB  changes {sum(figures['counts'].values()):,} "
            f"{figures['counts']}" + (f" stored {figures['stored']:,}" if "stored" in figures else "")
            + f"  load {load}")
    if reference is not None:
        line += f"\n{'':<12} {reference_name} {reference:7.2f} s   ratio compare/{reference_name} {seconds / reference:5.2f}"
    print(line, flush=True)


def report_floor(label: str, n: int, runs: list[tuple[dict, float | None]], reference_name: str) -> None:
    """The floor run's parts (medians) and their sum, beside the reference's time."""
    parts = {name: statistics.median(run[name] for run, _reference in runs) for name in ("read", "store", "fingerprints")}
    total = sum(parts.values())
    known = [reference for _run, reference in runs if reference is not None]
    first = runs[0][0]
    line = (f"{label:<12} {n:>9,} products  {first['read_what']} {parts['read']:.2f} s + storing "
            f"{first['changes']:,} changes {parts['store']:.2f} s + {first['fingerprinted']:,} fingerprints "
            f"{parts['fingerprints']:.2f} s = {total:.2f} s")
    if known:
        line += f"  ratio floor/{reference_name} {total / statistics.median(known):5.2f}"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="products in the largest run (default 1M)")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default: 100000 and --records)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/envsync-compare-bench"))
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server to run against too")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the median is shown (default 1)")
    parser.add_argument("--runs", default="job,workers,engine,floor",
                        help="comma-separated: job (the comparison job end to end: service, stored changes), "
                             "engine (compare() with a no-op progress callback, as a job passes one), "
                             "bare (compare() without one), workers (the job end to end with --workers real "
                             "worker processes sharing its parts), floor (the job's parts no Python can speed "
                             "up, each timed alone); default job,workers,engine,floor")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the workers run (default 2)")
    parser.add_argument("--redis", default="", help="Redis URL for the job runs (default: the embedded server)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[3].startswith("job:"):
            child_job(*args.child[:3], args.child[3][len("job:"):])
        elif args.child[3] == "floor":
            child_floor(*args.child[:3])
        elif args.child[3].startswith("workers:"):
            _kind, workers, redis_url = args.child[3].split(":", 2)
            child_workers(*args.child[:3], int(workers), redis_url)
        else:
            child(*args.child)
        return

    sizes = sorted({int(s) for s in args.sizes.split(",")} if args.sizes else {min(100_000, args.records), args.records})
    print("All modules, mode ALL, every gallery folder, PROD -> TEST. job: the comparison job end to end "
          "(changes stored); engine/bare: compare() alone, changes counted. rows/s = product rows read on "
          "both sides / wall time.")
    kinds = {"job": f"job:{args.redis}", "engine": "noop", "bare": "none",
             "workers": f"workers:{args.workers}:{args.redis}", "floor": "floor"}
    modes = [name for name in args.runs.split(",") if name]
    unknown = [name for name in modes if name not in kinds]
    if unknown:
        parser.error(f"unknown --runs {', '.join(unknown)}: choose from {', '.join(kinds)}")
    rss: dict[str, list[float]] = {}

    def run_all(database: str, n: int, urls: tuple[str, str], media: Path, reference: Callable[[], float | None],
                reference_name: str) -> None:
        """Every run of --runs between ``urls``, each beside ``reference``."""
        for mode in modes:
            if mode == "floor":
                report_floor(f"{database}/floor", n, [(run_child(*urls, media, "floor"), reference())
                                                      for _ in range(args.repeat)], reference_name)
                continue
            figures, median_reference = median_runs(
                args.repeat, functools.partial(run_child, *urls, media, kinds[mode]), reference)
            label = f"{database}/{mode}" + (f"/{args.workers}" if mode == "workers" else "")
            report(label, n, figures, reference_name, median_reference)
            rss.setdefault(label, []).append(figures["rss_kib"])

    for n in sizes:
        prod, test = build_sqlite(args.workdir, n)
        run_all("SQLite", n, (f"sqlite:///{prod}", f"sqlite:///{test}"), prod.parent,
                functools.partial(time_sqldiff, prod, test), "sqldiff --summary")
        if args.postgres:
            urls = build_postgres(args.postgres, n)
            try:
                run_all("PG", n, urls, prod.parent, functools.partial(time_copy, list(urls)), "COPY x2")
            finally:
                drop_postgres(args.postgres, list(urls))
    for label, values in rss.items():
        if len(values) > 1:
            print(f"{label}: peak RSS {values[-1] / values[0]:.2f}x from {sizes[0]:,} to {sizes[-1]:,} products "
                  f"(target: within 10%)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
