"""Media paths: a file name or folder name from a database never leaves the media root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A file or folder name that would resolve outside the media root, or is not a plain name."""


def _check_part(part: str, what: str) -> str:
    if not isinstance(part, str) or not part:
        raise UnsafePath(f"the {what} name is empty")
    if part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise UnsafePath(f"the {what} name {part!r} is not a plain name (it could point outside the media folder)")
    if part.strip() != part:
        raise UnsafePath(f"the {what} name {part!r} starts or ends with blanks")
    return part


def relative_media_path(folder: str | None, name: str) -> str:
    """``folder/name`` after checking both are plain names; raises UnsafePath."""
    parts = ([_check_part(folder, "folder")] if folder is not None else []) + [_check_part(name, "file")]
    return str(PurePosixPath(*parts))


def resolve_media_path(media_root: Path, relative: str) -> Path:
    """The absolute path of ``relative`` under ``media_root``; raises UnsafePath if it escapes it."""
    root = Path(media_root).resolve()
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or "\x00" in relative:
        raise UnsafePath(f"the path {relative!r} points outside the media folder")
    path = (root / pure).resolve()
    if path != root and root not in path.parents:
        raise UnsafePath(f"the path {relative!r} points outside the media folder")
    return path
