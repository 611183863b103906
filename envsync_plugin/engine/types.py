"""The values the engine takes and returns."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Callable


class Mode(enum.StrEnum):
    ALL = "all"  # new, modified and deleted records of the source
    NEW = "new"  # only records absent from the target


class Direction(enum.StrEnum):
    PROD_TO_TEST = "prod-to-test"
    TEST_TO_PROD = "test-to-prod"

    @property
    def source(self) -> str:
        return "PROD" if self is Direction.PROD_TO_TEST else "TEST"

    @property
    def target(self) -> str:
        return "TEST" if self is Direction.PROD_TO_TEST else "PROD"

    @property
    def arrow(self) -> str:
        return f"{self.source} → {self.target}"


def encode_key(value: Any) -> str:
    """A primary key value as the text envsync stores (JSON keeps ints and strings apart)."""
    return json.dumps(value, separators=(",", ":"), default=str)


def decode_key(text: str) -> Any:
    return json.loads(text)


@dataclass(frozen=True)
class RecordRef:
    """A record of a module table, by its primary key (JSON-encoded, see encode_key)."""

    table_name: str
    key: str


@dataclass
class Change:
    """One record that differs between source and target, as the comparison classifies it.

    ``tab`` is "conflict", "new", "modified" or "deleted"; ``action`` what applying it does
    ("insert", "update" or "delete"). ``selectable`` is False for a conflict that may never be
    applied (an unsafe file path). ``needs`` lists records this change needs in the target
    (a parent that is itself new in this comparison).
    """

    module: str
    table_name: str
    key: str
    tab: str
    action: str
    label: str
    source_fingerprint: str | None
    target_fingerprint: str | None
    reason: str | None = None
    selectable: bool = True
    needs: list[RecordRef] = field(default_factory=list)

    @property
    def selected_by_default(self) -> bool:
        return self.selectable and self.tab in ("new", "modified")


#: Progress callback: (module key, records compared so far in it, its total).
Progress = Callable[[str, int, int], None]
