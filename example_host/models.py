"""The example shop's tables: the synchronized content and the never-synchronized data."""

from __future__ import annotations

import sqlalchemy as sa
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


# --- synchronized content -------------------------------------------------------------------

class CmsPage(db.Model):
    __tablename__ = "cms_pages"
    id = db.Column(db.Integer, primary_key=True)
    slug = db.Column(db.String(200), unique=True, nullable=False)
    title = db.Column(db.String(200), nullable=False)
    body = db.Column(db.Text, nullable=False, default="")

    def __str__(self) -> str:
        return self.title


class GalleryFolder(db.Model):
    __tablename__ = "gallery_folders"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), unique=True, nullable=False)

    def __str__(self) -> str:
        return self.name


class GalleryImage(db.Model):
    __tablename__ = "gallery_images"
    __table_args__ = (db.UniqueConstraint("folder_id", "filename"),)
    id = db.Column(db.Integer, primary_key=True)
    folder_id = db.Column(db.Integer, db.ForeignKey("gallery_folders.id"), nullable=False)
    filename = db.Column(db.String(200), nullable=False)
    folder = db.relationship(GalleryFolder, backref="images")

    @property
    def path(self) -> str:
        return f"{self.folder.name}/{self.filename}"

    def __str__(self) -> str:
        return self.path if self.folder else self.filename


class Slider(db.Model):
    __tablename__ = "sliders"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)

    def __str__(self) -> str:
        return self.name


class Slide(db.Model):
    __tablename__ = "slides"
    id = db.Column(db.Integer, primary_key=True)
    slider_id = db.Column(db.Integer, db.ForeignKey("sliders.id"), nullable=False)
    image_id = db.Column(db.Integer, db.ForeignKey("gallery_images.id"), nullable=True)
    position = db.Column(db.Integer, nullable=False, default=0)
    caption = db.Column(db.String(200), nullable=False, default="")
    slider = db.relationship(Slider, backref="slides")
    image = db.relationship(GalleryImage)


class Category(db.Model):
    __tablename__ = "categories"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), unique=True, nullable=False)

    def __str__(self) -> str:
        return self.name


class Product(db.Model):
    __tablename__ = "products"
    id = db.Column(db.Integer, primary_key=True)
    sku = db.Column(db.String(64), unique=True, nullable=False)
    name = db.Column(db.String(200), nullable=False)
    price = db.Column(db.Numeric(10, 2), nullable=False)
    category_id = db.Column(db.Integer, db.ForeignKey("categories.id"), nullable=True)
    category = db.relationship(Category)


class SystemSetting(db.Model):
    """Shop settings; only the ``mobile_app.*`` JSONs are synchronized."""

    __tablename__ = "system_settings"
    key = db.Column(db.String(200), primary_key=True)
    value = db.Column(db.Text, nullable=False, default="")


# --- never synchronized -----------------------------------------------------------------------

class User(UserMixin, db.Model):
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(200), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    role = db.Column(db.String(20), nullable=False, default="editor")  # "admin" | "editor"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __str__(self) -> str:
        return self.email


class Order(db.Model):
    __tablename__ = "orders"
    id = db.Column(db.Integer, primary_key=True)
    number = db.Column(db.String(32), unique=True, nullable=False)
    customer_email = db.Column(db.String(200), nullable=False)
    total = db.Column(db.Numeric(10, 2), nullable=False)
    status = db.Column(db.String(20), nullable=False, default="new")
    created_at = db.Column(db.DateTime, nullable=False)


class Review(db.Model):
    __tablename__ = "reviews"
    id = db.Column(db.Integer, primary_key=True)
    product_id = db.Column(db.Integer, nullable=False)  # no FK: products may be synchronized away
    author = db.Column(db.String(100), nullable=False)
    rating = db.Column(db.Integer, nullable=False)
    text = db.Column(db.Text, nullable=False, default="")


class PromotionCode(db.Model):
    __tablename__ = "promotion_codes"
    id = db.Column(db.Integer, primary_key=True)
    code = db.Column(db.String(32), unique=True, nullable=False)
    discount_percent = db.Column(db.Integer, nullable=False)


class Campaign(db.Model):
    __tablename__ = "campaigns"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)
    starts_on = db.Column(db.Date, nullable=True)


class Translation(db.Model):
    __tablename__ = "translations"
    id = db.Column(db.Integer, primary_key=True)
    language = db.Column(db.String(8), nullable=False)
    msgid = db.Column(db.String(200), nullable=False)
    text = db.Column(db.Text, nullable=False)


class Title(db.Model):
    __tablename__ = "titles"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(50), nullable=False)


class PaymentType(db.Model):
    __tablename__ = "payment_types"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)


class DeliveryType(db.Model):
    __tablename__ = "delivery_types"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)
    price = db.Column(db.Numeric(10, 2), nullable=False)


class SeoSetting(db.Model):
    __tablename__ = "seo_settings"
    id = db.Column(db.Integer, primary_key=True)
    path = db.Column(db.String(200), nullable=False)
    meta_title = db.Column(db.String(200), nullable=False)


class BeautyAdvisorQuestion(db.Model):
    __tablename__ = "beauty_advisor_questions"
    id = db.Column(db.Integer, primary_key=True)
    text = db.Column(db.String(200), nullable=False)


class BeautyAdvisorAnswer(db.Model):
    __tablename__ = "beauty_advisor_answers"
    id = db.Column(db.Integer, primary_key=True)
    question_id = db.Column(db.Integer, db.ForeignKey("beauty_advisor_questions.id"), nullable=False)
    text = db.Column(db.String(200), nullable=False)
    product_sku = db.Column(db.String(64), nullable=True)


NEVER_SYNCHRONIZED_TABLES = (
    "users", "orders", "reviews", "promotion_codes", "campaigns", "translations", "titles",
    "payment_types", "delivery_types", "seo_settings", "beauty_advisor_questions", "beauty_advisor_answers",
)


def shop_tables() -> list[sa.Table]:
    """The shop's tables, parents first: ``db.metadata`` also holds envsync's own once the plugin is
    initialised, and those belong to envsync, not to the shop."""
    return [table for table in db.metadata.sorted_tables if not table.name.startswith("envsync_")]
