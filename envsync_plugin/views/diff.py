"""The field diff as the review shows it: plain values side by side, long texts as a line diff,
JSON settings as a structural diff. Values stay plain strings: the templates escape them."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from ..engine.compare import FieldDiff, RecordDiff

#: Texts longer than this (or with several lines) are shown as a line diff.
LONG_TEXT = 120


@dataclass(frozen=True)
class LinePair:
    """One row of a side-by-side line diff; ``tag`` is difflib's opcode (equal, replace, delete, insert)."""

    tag: str
    source: str | None
    target: str | None


@dataclass(frozen=True)
class JsonChange:
    path: str
    source: str | None  # None: absent on that side
    target: str | None
    status: str  # "added" (only in source), "removed" (only in target), "changed"


@dataclass
class FieldView:
    column: str
    changed: bool
    ignored: bool
    kind: str  # "plain" | "lines" | "json"
    source: str
    target: str
    lines: list[LinePair] = field(default_factory=list)
    json_changes: list[JsonChange] = field(default_factory=list)
    json_unchanged: int = 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _parse_json(text: str) -> Any:
    if not text or text.lstrip()[:1] not in "{[":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _flatten(value: Any, path: str, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out)
    else:
        out[path or "(value)"] = json.dumps(value, ensure_ascii=False)


def json_changes(source: Any, target: Any) -> tuple[list[JsonChange], int]:
    """Leaf by leaf: what the source has that the target has not, and the other way round."""
    left: dict[str, str] = {}
    right: dict[str, str] = {}
    _flatten(source, "", left)
    _flatten(target, "", right)
    changes, unchanged = [], 0
    for path in sorted(left.keys() | right.keys()):
        a, b = left.get(path), right.get(path)
        if a == b:
            unchanged += 1
        else:
            status = "added" if b is None else "removed" if a is None else "changed"
            changes.append(JsonChange(path, a, b, status))
    return changes, unchanged


def line_pairs(source: str, target: str) -> list[LinePair]:
    """Source and target lines aligned side by side (difflib's opcodes)."""
    a, b = source.splitlines(), target.splitlines()
    pairs: list[LinePair] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            pairs.append(LinePair(tag, left[k] if k < len(left) else None, right[k] if k < len(right) else None))
    return pairs


def field_view(item: FieldDiff, both_sides: bool) -> FieldView:
    source, target = _text(item.source_value), _text(item.target_value)
    view = FieldView(item.column, item.changed, item.ignored, "plain", source, target)
    if not (item.changed and both_sides):
        return view
    parsed_source, parsed_target = _parse_json(source), _parse_json(target)
    if parsed_source is not None and parsed_target is not None:
        view.kind = "json"
        view.json_changes, view.json_unchanged = json_changes(parsed_source, parsed_target)
    elif "\n" in source or "\n" in target or max(len(source), len(target)) > LONG_TEXT:
        view.kind = "lines"
        view.lines = line_pairs(source, target)
    return view


def fields_of(diff: RecordDiff) -> list[FieldView]:
    both = diff.source_exists and diff.target_exists
    return [field_view(item, both) for item in diff.fields]
