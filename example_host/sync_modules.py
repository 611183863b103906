"""The example shop's synchronization modules, declared for envsync."""

from __future__ import annotations

import json
from typing import Iterable, Mapping

import sqlalchemy as sa

from envsync_plugin import FileSpec, Picker, Side, SyncModule, SyncTable


def _in_picked_folders(images: sa.Table, side: Side) -> sa.ColumnElement[bool]:
    folders = side.tables["gallery_folders"]
    return images.c.folder_id.in_(sa.select(folders.c.id).where(folders.c.name.in_(sorted(side.picked or ()))))


def mobile_app_images(table_name: str, row: Mapping[str, object]) -> Iterable[str]:
    """Gallery files a mobile-app JSON setting points at: every string value "<folder>/<file>"
    under a key named ``image`` or ending in ``_image``."""
    if table_name != "system_settings":
        return []
    try:
        data = json.loads(str(row.get("value") or ""))
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and (key == "image" or key.endswith("_image")):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


MODULES = [
    SyncModule(
        "gallery_folders", "Gallery folders",
        description="Folders of the gallery and their image files.",
        tables=[
            SyncTable("gallery_folders", identity=("name",),
                      where=lambda t, side: t.c.name.in_(sorted(side.picked or ()))),
            SyncTable("gallery_images", identity=("folder_id", "filename"), where=_in_picked_folders,
                      file=FileSpec("filename", folder=("folder_id", "gallery_folders", "name"))),
        ],
        picker=Picker("gallery_folders", "name", label="folders"),
    ),
    SyncModule(
        "cms_pages", "CMS pages", description="Content pages of the shop.",
        tables=[SyncTable("cms_pages", identity=("slug",))],
    ),
    SyncModule(
        "sliders", "Sliders", description="Sliders and their slides (slides show gallery images).",
        tables=[SyncTable("sliders"), SyncTable("slides")],
    ),
    SyncModule(
        "products", "Products and categories", description="The catalogue: categories and products.",
        tables=[SyncTable("categories", identity=("name",)), SyncTable("products", identity=("sku",))],
    ),
    SyncModule(
        "system_config", "System config",
        description="Mobile-app JSON settings only (System > Settings > Integrations > Mobile app).",
        tables=[SyncTable("system_settings", where=lambda t, side: t.c.key.like("mobile\\_app.%", escape="\\"))],
        requires=("gallery_folders",),
        media_references=mobile_app_images,
    ),
]
