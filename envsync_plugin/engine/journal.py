"""Staged media files and the journal that moves them into place once the database has committed.

An apply copies every new file into ``<media_root>/.envsync-staging/<sync id>/files/`` (same file
system as the media, so the final move is an atomic rename), writes ``journal.json`` there just
before the database commit, and after the commit moves the staged files into place and removes the
deleted ones. If the process dies in between, ``finish_pending_file_moves`` (run when a worker
starts) reads each journal and decides from the database whether the commit happened: the journal
names a few *witness* rows with their fingerprint before and after the apply. Committed: the moves
are completed; not committed: the staging folder is removed. A running apply holds a lock on its
staging folder, so a worker starting meanwhile leaves it alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import sqlalchemy as sa

from .files import UnsafePath, resolve_media_path
from .fingerprint import row_fingerprint
from .types import decode_key

STAGING_DIR = ".envsync-staging"


class MediaEnvironment(Protocol):
    """What the engine needs of an environment (envsync_plugin.environments.Environment has it)."""

    engine: sa.Engine
    media_root: Path


@dataclass(frozen=True)
class Witness:
    """A row the apply changes: its fingerprint over ``columns`` before and after (None: absent)."""

    table_name: str
    key: str
    columns: list[str]
    before: str | None
    after: str | None


@dataclass
class PendingFiles:
    """The file work left after the commit: staged name -> destination, and files to remove."""

    moves: dict[str, str] = field(default_factory=dict)
    removals: list[str] = field(default_factory=list)
    witnesses: list[Witness] = field(default_factory=list)


@dataclass(frozen=True)
class Recovery:
    """What finish_pending_file_moves did with one interrupted synchronization."""

    sync_id: str
    committed: bool
    files_moved: int
    files_removed: int


class Staging:
    """The staging folder of one synchronization in a media root; holds its lock while open."""

    def __init__(self, media_root: Path, sync_id: str) -> None:
        self.media_root = Path(media_root)
        self.sync_id = str(sync_id)
        self.folder = resolve_media_path(self.media_root, f"{STAGING_DIR}/{self.sync_id}")
        self.pending = PendingFiles()
        self._lock: Any = None

    def open(self) -> Staging:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _try_lock(self.folder)
        if self._lock is None:
            raise RuntimeError(f"the staging folder {self.folder} is in use by another process")
        return self

    def stage(self, source: Path, destination: str) -> None:
        """Copy ``source`` into the staging folder, to be moved to ``destination`` (relative) later."""
        resolve_media_path(self.media_root, destination)  # refuse an unsafe destination now, not after commit
        staged = f"files/{len(self.pending.moves)}"
        target = self.folder / staged
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, target)
        self.pending.moves[staged] = destination

    def remove_later(self, relative: str) -> None:
        resolve_media_path(self.media_root, relative)
        self.pending.removals.append(relative)

    def write_journal(self, witnesses: list[Witness]) -> None:
        """Written (and flushed to disk) right before the database commit."""
        self.pending.witnesses = witnesses
        temporary = self.folder / "journal.json.tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(asdict(self.pending), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.folder / "journal.json")

    def complete(self) -> tuple[int, int]:
        """After the commit: move staged files into place, remove deleted ones, clean up."""
        counts = _complete(self.media_root, self.folder, self.pending)
        self.close()
        return counts

    def discard(self) -> None:
        """Rolled back: forget every staged file."""
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        _remove_empty_staging_root(self.media_root)


def _try_lock(folder: Path) -> Any:
    handle = open(folder / "lock", "a")  # noqa: SIM115 - held open for as long as the lock lives
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _complete(media_root: Path, folder: Path, pending: PendingFiles) -> tuple[int, int]:
    moved = removed = 0
    for relative in pending.removals:
        try:
            resolve_media_path(media_root, relative).unlink()
            removed += 1
        except FileNotFoundError:
            pass
    for staged, destination in pending.moves.items():
        path = resolve_media_path(media_root, destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(folder / staged, path)
            moved += 1
        except FileNotFoundError:  # moved already, before an earlier interruption
            pass
    return moved, removed


def _remove_empty_staging_root(media_root: Path) -> None:
    try:
        (Path(media_root) / STAGING_DIR).rmdir()
    except OSError:
        pass  # not empty (another synchronization) or absent


def _committed(engine: sa.Engine, witnesses: list[Witness]) -> bool:
    """True if any witness row has the fingerprint the apply gave it (so its transaction committed)."""
    if not witnesses:
        return False  # only file contents changed: discarding the files leaves nothing half-applied
    metadata = sa.MetaData()
    metadata.reflect(engine, only=sorted({w.table_name for w in witnesses}))
    with engine.connect() as conn:
        for witness in witnesses:
            table = metadata.tables[witness.table_name]
            pk = list(table.primary_key.columns)
            values = decode_key(witness.key)
            values = values if len(pk) > 1 else [values]
            row = conn.execute(sa.select(table).where(*(c == v for c, v in zip(pk, values, strict=True)))).mappings().first()
            now = None if row is None else row_fingerprint(row, witness.columns)
            if now == witness.after and now != witness.before:
                return True
    return False


def finish_pending_file_moves(target: MediaEnvironment) -> list[Recovery]:
    """Finish (or drop) the file moves of synchronizations interrupted between commit and move.

    Call it when a worker starts, before it takes jobs. Staging folders whose synchronization is
    still running (their lock is held) are left alone.
    """
    recoveries: list[Recovery] = []
    for folder, lock in _staging_folders(target):
        if lock is None:
            continue
        try:
            journal = folder / "journal.json"
            moved = removed = 0
            committed = False
            if journal.exists():
                data = json.loads(journal.read_text(encoding="utf-8"))
                pending = PendingFiles(data["moves"], data["removals"], [Witness(**w) for w in data["witnesses"]])
                committed = _committed(target.engine, pending.witnesses)
                if committed:
                    try:
                        moved, removed = _complete(Path(target.media_root), folder, pending)
                    except UnsafePath:
                        committed = False  # a tampered journal: never write outside the media root
            recoveries.append(Recovery(folder.name, committed, moved, removed))
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.close()
    _remove_empty_staging_root(Path(target.media_root))
    return recoveries


def running_applies(target: MediaEnvironment) -> list[str]:
    """The synchronization ids whose apply is running on ``target`` right now, in whatever process:
    their staging folder's lock is held."""
    running = []
    for folder, lock in _staging_folders(target):
        if lock is None:
            running.append(folder.name)
        else:
            lock.close()
    return running


def _staging_folders(target: MediaEnvironment) -> Iterator[tuple[Path, Any]]:
    """Each staging folder of ``target`` with its lock taken, or None when another process holds it
    (its apply runs); the caller closes the lock."""
    root = Path(target.media_root) / STAGING_DIR
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir():
            yield folder, _try_lock(folder)
