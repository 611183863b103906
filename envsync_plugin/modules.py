"""Module declarations: which tables a host lets envsync carry, and how to read them.

A host declares each module in a few lines::

    SyncModule("cms_pages", "CMS pages", tables=[SyncTable("cms_pages", identity=("slug",))])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa

from .errors import ConfigError


@dataclass(frozen=True)
class Side:
    """What a row filter sees of one environment: its reflected tables and the items the user picked."""

    tables: Mapping[str, sa.Table]
    picked: frozenset[str] | None  # None: the module has no picker, or every item is taken


#: A row filter: given a table of one side, the clause its rows must satisfy (None: every row).
RowFilter = Callable[[sa.Table, Side], "sa.ColumnElement[bool] | None"]

#: A hook that finds the media files a row's values point at (e.g. images named in a JSON setting),
#: as paths relative to the media root ("mobile_app/banner.png").
MediaReferences = Callable[[str, Mapping[str, object]], Iterable[str]]


@dataclass(frozen=True)
class FileSpec:
    """A row that owns a file at ``<media_root>/<folder>/<name>``.

    ``name_column`` holds the file name; ``folder`` is ``(fk_column, folder_table, folder_name_column)``:
    the folder's name is read from the row the foreign key points at. Without ``folder`` the file
    lies directly in the media root.
    """

    name_column: str
    folder: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class SyncTable:
    """One table of a module.

    ``identity``: the natural-key columns that say which record a row is (a CMS page's slug);
    two rows with one key but different identities are two different records.
    ``ignore``: columns left out of the content comparison (timestamps, counters).
    ``where``: a row filter; rows outside it are neither compared nor written.
    ``file``: the row owns a media file, compared by its bytes and carried with it.
    """

    name: str
    identity: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    where: RowFilter | None = None
    file: FileSpec | None = None


@dataclass(frozen=True)
class Picker:
    """Lets the user pick items of a module (gallery folders) by a name column of one of its tables."""

    table: str
    column: str
    label: str = "items"


@dataclass(frozen=True)
class SyncModule:
    """A switch on the settings page: a group of tables synchronized together.

    ``tables`` are listed parents first; ``requires`` names modules switched on with this one
    (system config forces gallery folders); ``media_references`` finds files named inside values.
    """

    key: str
    label: str
    tables: Sequence[SyncTable]
    description: str = ""
    requires: tuple[str, ...] = ()
    picker: Picker | None = None
    media_references: MediaReferences | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "requires", tuple(self.requires))
        if not self.key.replace("_", "").isalnum():
            raise ConfigError(f"SyncModule key {self.key!r} must be letters, digits and '_'.")
        if not self.tables:
            raise ConfigError(f"SyncModule {self.key!r} has no tables.")

    def table(self, name: str) -> SyncTable:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)


@dataclass
class ModuleRegistry:
    """The host's modules, in the order the host declared them (which is also the apply order)."""

    modules: list[SyncModule] = field(default_factory=list)

    def __post_init__(self) -> None:
        seen_keys: set[str] = set()
        seen_tables: dict[str, str] = {}
        for module in self.modules:
            if module.key in seen_keys:
                raise ConfigError(f"Two modules share the key {module.key!r}.")
            seen_keys.add(module.key)
            for table in module.tables:
                if table.name.startswith("envsync_"):
                    raise ConfigError(f"Module {module.key!r}: envsync's own table {table.name!r} is never synchronized.")
                if table.name in seen_tables:
                    raise ConfigError(
                        f"Table {table.name!r} is declared by both {seen_tables[table.name]!r} and {module.key!r}."
                    )
                seen_tables[table.name] = module.key
        for module in self.modules:
            for required in module.requires:
                if required not in seen_keys:
                    raise ConfigError(f"Module {module.key!r} requires the unknown module {required!r}.")

    def __iter__(self):
        return iter(self.modules)

    def __contains__(self, key: object) -> bool:
        return any(module.key == key for module in self.modules)

    def __getitem__(self, key: str) -> SyncModule:
        for module in self.modules:
            if module.key == key:
                return module
        raise KeyError(key)

    @property
    def keys(self) -> list[str]:
        return [module.key for module in self.modules]

    def with_required(self, keys: Iterable[str]) -> list[str]:
        """The given module keys plus every module they require, in declaration order."""
        wanted = set(keys)
        pending = list(wanted)
        while pending:
            for required in self[pending.pop()].requires:
                if required not in wanted:
                    wanted.add(required)
                    pending.append(required)
        return [key for key in self.keys if key in wanted]

    def module_of_table(self, table_name: str) -> SyncModule:
        for module in self.modules:
            if any(table.name == table_name for table in module.tables):
                return module
        raise KeyError(table_name)
