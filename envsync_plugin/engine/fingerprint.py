"""Fingerprints: a short hash of a record's content (its compared columns and owned file's bytes).

The comparison stores them; the apply re-reads both sides and compares them to detect drift; the
baseline keeps the fingerprint both sides had after the last successful synchronization.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

#: The file digest used for a row whose file is missing on disk.
MISSING_FILE = "missing"


def normalize(value: Any) -> str:
    """One canonical text per value, the same whichever database it was read from."""
    if value is None:
        return "\x00null"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\x00hex:" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def decimal_text_slow(value: Decimal) -> str:
    """The canonical text of a Decimal, by definition: normalized (the context's precision), in fixed
    notation, without a sign on zero. decimal_text gives the same, faster."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def decimal_text(value: Decimal) -> str:
    """decimal_text_slow(value), byte for byte, from the value's own text when it is short plain
    notation ("123.4500" -> "123.45", "-0.0" -> "0"): no normalize() and no format() (a third of the
    fingerprint time of a table with a price column). Scientific notation, NaN/Infinity and values
    with more digits than the context's precision (normalize() rounds those) take the slow path."""
    text = str(value)
    if len(text) > decimal.getcontext().prec or "E" in text or "n" in text or "N" in text:
        return decimal_text_slow(value)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def row_fingerprint(row: Mapping[str, Any], columns: Iterable[str], file_digest: str | None = None) -> str:
    """The fingerprint of ``row`` over ``columns`` (in the given order) and its file's digest."""
    h = hashlib.blake2b(digest_size=16)
    for name in columns:
        h.update(name.encode())
        h.update(b"\x1f")
        h.update(normalize(row[name]).encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    if file_digest is not None:
        h.update(b"\x1dfile:")
        h.update(file_digest.encode())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """The digest of a file's bytes, or MISSING_FILE."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return MISSING_FILE
