"""Backups for revert: the target rows and files a synchronization overwrote or deleted.

The apply saves one backup per synchronization before it writes anything; ``revert`` reads it back.
The store is a small protocol so a host can keep backups elsewhere; ``FolderBackupStore`` keeps each
backup in a folder::

    <root>/<backup id>/records.jsonl   one BackupRecord per line (values type-tagged, see encode_value)
    <root>/<backup id>/files/<folder>/<file>   copies of the target files as they were before
    <root>/<backup id>/complete        written once the synchronization committed

A backup without ``complete`` belongs to an apply that did not commit and is never used. Keep the
root out of the media root (it holds database rows and must not be served to the web).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import uuid
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Protocol

from ..errors import EnvSyncError
from .files import resolve_media_path


class BackupNotFound(EnvSyncError):
    """Raised when a backup does not exist or its synchronization never committed."""


class BackupRecord(NamedTuple):
    """One record a synchronization touched on the target (a tuple: a large synchronization makes one
    per record).

    ``action`` is what the apply did ("insert", "update", "delete"); ``before`` the target row before
    it (None for an insert); ``after`` the fingerprint the apply wrote (None for a delete), which a
    revert requires the target still to have; ``file`` the media path (relative) of the record's file
    before the apply, when a copy of it is kept in the backup.
    """

    table_name: str
    key: str
    action: str
    before: dict[str, Any] | None
    after: str | None
    file: str | None = None
    label: str = ""


class BackupStore(Protocol):
    """Where backups live. Ids are the caller's (the synchronization id)."""

    def save(self, backup_id: str, records: Iterable[BackupRecord], files: Mapping[str, Path]) -> None:
        """Store ``records`` and a copy of each file (relative media path -> its current location)."""

    def mark_complete(self, backup_id: str) -> None:
        """The synchronization committed: the backup may now be used by ``revert``."""

    def records(self, backup_id: str) -> Iterator[BackupRecord]:
        """The records of a complete backup; raises BackupNotFound."""

    def file(self, backup_id: str, relative: str) -> Path:
        """Where the stored copy of the file once at ``relative`` is."""

    def discard(self, backup_id: str) -> None:
        """Forget a backup (after a failed apply, or once it has been reverted)."""


def encode_value(value: Any) -> Any:
    """A column value as JSON that decode_value turns back into the same Python value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    # JSON columns come back as dicts and lists: tag them so they never pass for a tag.
    return {"$json": value}


_DECODERS = {
    "$decimal": Decimal,
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
    "$json": lambda value: value,
}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        ((tag, inner),) = value.items()
        return _DECODERS[tag](inner)
    return value


_quote = json.encoder.encode_basestring_ascii  # what json.dumps does to a str (C speed)

#: A line of records.jsonl as json.dumps writes it, for a record without a row before it or a file
#: (a new record: nearly every line of a large synchronization), formatted without json.dumps.
_NEW_RECORD_LINE = ('{"table": %s, "key": %s, "action": %s, "before": null, "after": %s, "file": null, '
                    '"label": %s}\n')


def _record_line(record: BackupRecord) -> str:
    table_name, key, action, before, after, file, label = record
    encoded = None if before is None else {k: encode_value(v) for k, v in before.items()}
    return json.dumps({"table": table_name, "key": key, "action": action, "before": encoded,
                       "after": after, "file": file, "label": label}) + "\n"


def _record_text(records: list[BackupRecord]) -> str:
    """The lines of ``records``; a batch of new records only (the usual batch of a large
    synchronization) is formatted column by column, without a Python step per record."""
    if not records:
        return ""
    tables, keys, actions, befores, afters, files, labels = zip(*records, strict=True)
    if befores.count(None) != len(records) or files.count(None) != len(records) or None in afters:
        return "".join(map(_record_line, records))
    return "".join(map(_NEW_RECORD_LINE.__mod__, zip(map(_quote, tables), map(_quote, keys), map(_quote, actions),
                                                     map(_quote, afters), map(_quote, labels), strict=True)))


class FolderBackupStore:
    """Backups as JSON lines plus copied files in a folder per backup (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _folder(self, backup_id: str) -> Path:
        # The id names a folder: the same plain-name rule as media names keeps it inside the root.
        return resolve_media_path(self.root, str(backup_id))

    def save(self, backup_id: str, records: Iterable[BackupRecord], files: Mapping[str, Path]) -> None:
        folder = self._folder(backup_id)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        with open(folder / "records.jsonl", "w", encoding="utf-8") as out:
            records = iter(records)
            while chunk := list(islice(records, 10_000)):
                out.write(_record_text(chunk))
        for relative, current in files.items():
            copy = resolve_media_path(folder / "files", relative)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(current, copy)

    def mark_complete(self, backup_id: str) -> None:
        (self._folder(backup_id) / "complete").touch()

    def records(self, backup_id: str) -> Iterator[BackupRecord]:
        folder = self._folder(backup_id)
        if not (folder / "complete").exists():
            raise BackupNotFound(f"There is no backup of synchronization {backup_id} (it was never applied, "
                                 "or it has been reverted already).")
        with open(folder / "records.jsonl", encoding="utf-8") as lines:
            for line in lines:
                data = json.loads(line)
                before = data["before"]
                yield BackupRecord(data["table"], data["key"], data["action"],
                                   None if before is None else {k: decode_value(v) for k, v in before.items()},
                                   data["after"], data["file"], data.get("label", ""))

    def file(self, backup_id: str, relative: str) -> Path:
        return resolve_media_path(self._folder(backup_id) / "files", relative)

    def discard(self, backup_id: str) -> None:
        shutil.rmtree(self._folder(backup_id), ignore_errors=True)
