"""The back office's pages: the dashboard, a list/edit view per table, and the gallery's media files."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, abort, send_file, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage
from werkzeug.security import generate_password_hash
from wtforms import FileField, PasswordField, SelectField, TextAreaField
from wtforms.validators import Email, Optional, ValidationError

from envsync_plugin import current_envsync
from envsync_plugin.engine.files import UnsafePath, relative_media_path, resolve_media_path

from . import models as m
from .auth import refuse

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def media_root() -> Path:
    """The media folder of the environment this instance serves."""
    environments = current_envsync.environments
    return environments[environments.current].media_root


# --- list/edit views -------------------------------------------------------------------------

class ShopModelView(ModelView):
    """Every table's view: signed-in staff only; ``admin_only`` views for admins alone."""

    # Flask-WTF's form base, so the CSRF token CSRFProtect checks is in every Flask-Admin form,
    # including the list's delete buttons.
    form_base_class = FlaskForm
    admin_only = False
    page_size = 50
    column_display_pk = True
    can_view_details = True
    can_set_page_size = True

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and (current_user.is_admin or not self.admin_only))

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        return refuse()


def _thumbnail(image: m.GalleryImage | None, size: int = 64) -> Markup:
    if image is None or image.folder is None:
        return Markup('<span class="text-muted">no image</span>')
    src = url_for("media", relative=image.path)
    return Markup('<img src="{}" alt="{}" title="{}" class="img-thumbnail" style="max-width:{}px;max-height:{}px">').format(
        src, image.path, image.path, size, size
    )


class CmsPageView(ShopModelView):
    column_list = ("id", "title", "slug")
    column_searchable_list = ("title", "slug", "body")
    column_default_sort = "id"
    form_columns = ("title", "slug", "body")
    form_overrides = {"body": TextAreaField}
    form_widget_args = {"body": {"rows": 14}}


class SliderView(ShopModelView):
    column_list = ("id", "name", "slides")
    column_formatters = {"slides": lambda v, c, model, n: len(model.slides)}
    form_columns = ("name",)


class SlideView(ShopModelView):
    column_list = ("id", "slider", "position", "image", "caption")
    column_default_sort = [("slider_id", False), ("position", False)]
    column_filters = ("slider.name",)
    column_formatters = {"image": lambda v, c, model, n: _thumbnail(model.image)}
    form_columns = ("slider", "image", "position", "caption")


class GalleryFolderView(ShopModelView):
    column_list = ("id", "name", "images")
    column_formatters = {"images": lambda v, c, model, n: len(model.images)}
    form_columns = ("name",)
    form_args = {"name": {"validators": [lambda form, field: _plain_name(field.data, "folder")]}}

    def update_model(self, form: Any, model: m.GalleryFolder) -> bool:
        model._old_name = model.name  # type: ignore[attr-defined]  # to move the folder after a rename
        return super().update_model(form, model)

    def after_model_change(self, form: Any, model: m.GalleryFolder, is_created: bool) -> None:
        root = media_root()
        new = resolve_media_path(root, relative_media_path(None, model.name))
        old_name = getattr(model, "_old_name", None)
        old = resolve_media_path(root, relative_media_path(None, old_name)) if old_name else None
        if old is not None and old != new and old.exists():
            old.rename(new)
        new.mkdir(parents=True, exist_ok=True)


def _plain_name(name: str | None, what: str) -> str:
    try:
        return relative_media_path(None, name or "")
    except UnsafePath as exc:
        raise ValidationError(f"Not a plain {what} name: {exc}.") from None


def _check_upload(form: Any, field: FileField) -> None:
    upload = field.data
    if not isinstance(upload, FileStorage) or not upload.filename:
        return
    name = _plain_name(upload.filename, "file")
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        raise ValidationError(f"Upload an image ({', '.join(IMAGE_EXTENSIONS)}), not {name!r}.")
    data = upload.stream.read()
    upload.stream.seek(0)
    try:
        Image.open(io.BytesIO(data)).verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValidationError(f"{name!r} is not a readable image.") from None


class GalleryImageView(ShopModelView):
    """Images live at ``<media root>/<folder name>/<file name>``; the upload sets the file name."""

    column_list = ("id", "thumbnail", "folder", "filename")
    column_formatters = {"thumbnail": lambda v, c, model, n: _thumbnail(model)}
    column_filters = ("folder.name", "filename")
    column_searchable_list = ("filename",)
    column_default_sort = [("folder_id", False), ("filename", False)]
    form_columns = ("folder", "upload")
    form_extra_fields = {"upload": FileField(
        "Image file", validators=[_check_upload],
        description="PNG, JPEG, GIF or WebP. Its file name is the image's name in the folder; "
                    "on edit, a new file replaces the picture.",
    )}
    column_details_list = ("id", "thumbnail", "folder", "filename")

    def on_model_change(self, form: Any, model: m.GalleryImage, is_created: bool) -> None:
        upload = form.upload.data
        if isinstance(upload, FileStorage) and upload.filename:
            model.filename = upload.filename  # checked by _check_upload
            model._upload_bytes = upload.stream.read()  # type: ignore[attr-defined]
        elif is_created:
            raise ValidationError("Choose an image file to upload.")

    def update_model(self, form: Any, model: m.GalleryImage) -> bool:
        model._old_path = model.path  # type: ignore[attr-defined]  # the file moves with folder/name
        return super().update_model(form, model)

    def after_model_change(self, form: Any, model: m.GalleryImage, is_created: bool) -> None:
        # Written once the row is committed, so a refused row never leaves a stray file behind.
        root = media_root()
        new = resolve_media_path(root, relative_media_path(model.folder.name, model.filename))
        old_path = getattr(model, "_old_path", None)
        old = resolve_media_path(root, old_path) if old_path else None
        data = getattr(model, "_upload_bytes", None)
        new.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            _write_atomically(new, data)
            if old is not None and old != new and old.exists():
                old.unlink()
        elif old is not None and old != new and old.exists():
            shutil.move(old, new)

    def on_model_delete(self, model: m.GalleryImage) -> None:
        model._old_path = model.path  # type: ignore[attr-defined]

    def after_model_delete(self, model: m.GalleryImage) -> None:
        path = resolve_media_path(media_root(), model._old_path)  # type: ignore[attr-defined]
        path.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CategoryView(ShopModelView):
    column_list = ("id", "name")
    column_searchable_list = ("name",)
    form_columns = ("name",)


class ProductView(ShopModelView):
    column_list = ("id", "sku", "name", "price", "category")
    column_searchable_list = ("sku", "name")
    column_filters = ("category.name", "price")
    column_default_sort = "id"
    form_columns = ("sku", "name", "price", "category")


class SystemSettingView(ShopModelView):
    column_list = ("key", "value")
    column_searchable_list = ("key", "value")
    column_default_sort = "key"
    column_formatters = {
        "key": lambda v, c, model, n: Markup('{} <span class="badge badge-info" title="{}">synchronized</span>').format(
            model.key, "carried between PROD and TEST by System > Synchronization (System config)"
        ) if model.key.startswith("mobile_app.") else model.key,
        "value": lambda v, c, model, n: model.value if len(model.value) <= 120 else model.value[:117] + "...",
    }
    form_columns = ("key", "value")
    form_overrides = {"value": TextAreaField}
    form_widget_args = {"value": {"rows": 12, "style": "font-family: monospace"}}


class OrderView(ShopModelView):
    column_list = ("id", "number", "customer_email", "total", "status", "created_at")
    column_searchable_list = ("number", "customer_email")
    column_filters = ("status", "created_at")
    column_default_sort = ("created_at", True)


class UserView(ShopModelView):
    """Staff accounts; only admins manage them, and the password hash never leaves the server."""

    admin_only = True
    column_list = ("id", "email", "role")
    column_details_list = ("id", "email", "role")
    form_columns = ("email", "role", "password")
    form_extra_fields = {"password": PasswordField("Password", validators=[Optional()],
                                                   description="Leave empty to keep the current password.")}
    form_overrides = {"role": SelectField}
    form_args = {
        "email": {"validators": [Email()]},
        "role": {"choices": [("editor", "Editor (content, no synchronization)"), ("admin", "Admin (may synchronize)")]},
    }

    def on_model_change(self, form: Any, model: m.User, is_created: bool) -> None:
        model.email = model.email.strip().lower()
        if form.password.data:
            model.password_hash = generate_password_hash(form.password.data)
        elif is_created:
            raise ValidationError("A new user needs a password.")


# (category, menu name, model, endpoint, view class): the menu a shop admin knows, in its order.
VIEWS: list[tuple[str, str, type, str, type[ShopModelView]]] = [
    ("Content", "CMS pages", m.CmsPage, "cms_pages", CmsPageView),
    ("Content", "Sliders", m.Slider, "sliders", SliderView),
    ("Content", "Slides", m.Slide, "slides", SlideView),
    ("Gallery", "Folders", m.GalleryFolder, "gallery_folders", GalleryFolderView),
    ("Gallery", "Images", m.GalleryImage, "gallery_images", GalleryImageView),
    ("Catalogue", "Categories", m.Category, "categories", CategoryView),
    ("Catalogue", "Products", m.Product, "products", ProductView),
    ("Sales", "Orders", m.Order, "orders", OrderView),
    ("Sales", "Reviews", m.Review, "reviews", ShopModelView),
    ("Sales", "Promotion codes", m.PromotionCode, "promotion_codes", ShopModelView),
    ("Sales", "Campaigns", m.Campaign, "campaigns", ShopModelView),
    ("System", "System settings", m.SystemSetting, "system_settings", SystemSettingView),
    ("System", "Translations", m.Translation, "translations", ShopModelView),
    ("System", "Titles", m.Title, "titles", ShopModelView),
    ("System", "Payment types", m.PaymentType, "payment_types", ShopModelView),
    ("System", "Delivery types", m.DeliveryType, "delivery_types", ShopModelView),
    ("System", "SEO settings", m.SeoSetting, "seo_settings", ShopModelView),
    ("System", "Users", m.User, "users", UserView),
    ("Beauty Advisor", "Questions", m.BeautyAdvisorQuestion, "beauty_advisor_questions", ShopModelView),
    ("Beauty Advisor", "Answers", m.BeautyAdvisorAnswer, "beauty_advisor_answers", ShopModelView),
]


def add_views(admin: Admin) -> None:
    for category, name, model, endpoint, view_class in VIEWS:
        admin.add_view(view_class(model, m.db, name=name, category=category, endpoint=endpoint))


# --- dashboard ------------------------------------------------------------------------------

class DashboardView(AdminIndexView):
    """The back office's home: which environment this is, and how many records each table holds."""

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        return refuse()

    @expose("/")
    def index(self) -> str:
        groups: dict[str, list[dict[str, Any]]] = {}
        for view in self.admin._views:  # noqa: SLF001 - Flask-Admin keeps no public list of views
            if isinstance(view, ShopModelView) and view.is_accessible():
                count = m.db.session.scalar(sa.select(sa.func.count()).select_from(view.model))
                groups.setdefault(view.category, []).append(
                    {"name": view.name, "count": count, "url": url_for(f"{view.endpoint}.index_view")}
                )
        return self.render("shop/dashboard.html", groups=groups, media_root=media_root())


# --- media files ----------------------------------------------------------------------------

@login_required
def serve_media(relative: str) -> Any:
    """A gallery file of this environment, for signed-in staff (thumbnails in the lists)."""
    try:
        path = resolve_media_path(media_root(), relative)
    except UnsafePath:
        abort(404)
    if not path.is_file():
        abort(404)
    return send_file(path, max_age=0)


def init_app(app: Flask) -> None:
    app.add_url_rule("/media/<path:relative>", "media", serve_media)
