"""Demo content for the example shop: PROD, and TEST as a copy of PROD with a few documented differences.

``seed(prod_engine, test_engine, prod_media, test_media, reset=...)`` writes both environments;
``flask --app example_host demo-data [--reset]`` calls it for the configured ones. Everything comes
from one seeded random generator and fixed dates, so two runs write identical databases and files.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import with_appcontext
from PIL import Image, ImageColor, ImageDraw, ImageFont

from envsync_plugin.engine.files import UnsafePath, relative_media_path, resolve_media_path
from envsync_plugin.models import define_tables

from .models import db, shop_tables

# envsync defines its tables on the host's metadata when EnvSync is created; doing it here too
# (it is idempotent) lets tests and scripts seed without building an app.
define_tables(db.metadata)

SEED = 2026
LOGINS = (("admin@example.com", "admin", "admin"), ("editor@example.com", "editor", "editor"))
GALLERY_FOLDERS = ("mobile_app", "banners", "products", "blog")

Rows = dict[str, list[dict[str, Any]]]


class DemoDataExists(click.ClickException):
    """Raised when an environment already holds data and ``reset`` was not asked for."""


@dataclass
class Dataset:
    """One environment's demo content: rows per table, and media files by path relative to the media root."""

    rows: Rows = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    """One way TEST differs from PROD after seeding (printed by the command, relied on by tests)."""

    kind: str  # "new on TEST" | "modified on TEST" | "deleted on TEST" | "changed on PROD" | "same-ID collision"
    table: str
    key: Any
    what: str


# --- content --------------------------------------------------------------------------------

_PAGES = [
    ("About us", "about-us"), ("Contact", "contact"), ("Delivery", "delivery"), ("Returns and refunds", "returns"),
    ("Terms and conditions", "terms"), ("Privacy policy", "privacy-policy"), ("Cookie policy", "cookie-policy"),
    ("Frequently asked questions", "faq"), ("Store locator", "stores"), ("Gift cards", "gift-cards"),
    ("Loyalty programme", "loyalty-programme"), ("Careers", "careers"), ("Press", "press"),
    ("Sustainability", "sustainability"), ("Payment methods", "payment-methods"), ("Order tracking", "order-tracking"),
    ("Newsletter", "newsletter"), ("Beauty Advisor", "beauty-advisor"), ("Our brands", "brands"),
    ("Click and collect", "click-and-collect"), ("Spring sale 2025", "spring-sale-2025"),
    ("Summer sale 2025", "summer-sale-2025"), ("Black Friday 2025", "black-friday-2025"),
    ("Christmas gift guide 2025", "christmas-gift-guide-2025"), ("Samples and minis", "samples-and-minis"),
    ("Accessibility", "accessibility"), ("Product safety", "product-safety"), ("Imprint", "imprint"),
    ("How to build a skincare routine", "blog-skincare-routine"), ("Sunscreen explained", "blog-sunscreen-explained"),
    ("Five minute make-up", "blog-five-minute-make-up"), ("Choosing a signature scent", "blog-signature-scent"),
    ("Caring for curly hair", "blog-curly-hair"), ("Vitamin C serums, honestly", "blog-vitamin-c"),
    ("Men's grooming basics", "blog-mens-grooming"), ("Clean beauty: what it means", "blog-clean-beauty"),
    ("Night-time routine", "blog-night-routine"), ("Nail care at home", "blog-nail-care"),
    ("Travel-size essentials", "blog-travel-essentials"), ("Winter skin rescue", "blog-winter-skin"),
]

_SENTENCES = [
    "We ship every order within two working days from our warehouse in Poznań.",
    "Orders above the free delivery threshold travel at our cost.",
    "You can return unopened products within 30 days of delivery, no questions asked.",
    "Our Beauty Advisor helps you choose products that suit your skin type.",
    "Members of the loyalty programme collect one point for every zloty spent.",
    "All prices include VAT.",
    "Samples are added to every order, while stocks last.",
    "Our customer service team answers e-mails from Monday to Saturday, 8:00 to 20:00.",
    "Start with a gentle cleanser, follow with a serum and finish with a moisturiser.",
    "Apply sunscreen every morning, even when the sky is grey.",
    "Patch-test a new product on a small area of skin before using it all over.",
    "Refills and recyclable packaging help us cut waste by a third.",
    "Gift cards are valid for twelve months and can be used online and in stores.",
    "Click and collect orders are ready in the store of your choice within 24 hours.",
]

_CATEGORIES = ["Skincare", "Make-up", "Fragrance", "Hair care", "Body care", "Men", "Sun care", "Nails",
               "Accessories", "Gift sets"]
_BRANDS = ["Lumière", "Nordic Dew", "Velvet & Co", "Atelier Rose", "Pure Botanica", "Sol Rituals", "Urban Oak",
           "Marea", "Kinfolk Skin", "Ivory Lab"]
_PRODUCT_TYPES = {
    "Skincare": ["Hydrating Serum", "Night Cream", "Gentle Cleanser", "Vitamin C Serum", "Eye Cream", "Toner"],
    "Make-up": ["Matte Lipstick", "Mascara", "Foundation", "Concealer", "Blush", "Eyeliner"],
    "Fragrance": ["Eau de Parfum", "Eau de Toilette", "Body Mist", "Solid Perfume"],
    "Hair care": ["Repair Shampoo", "Curl Conditioner", "Hair Oil", "Dry Shampoo"],
    "Body care": ["Body Lotion", "Shower Gel", "Hand Cream", "Body Scrub"],
    "Men": ["Beard Oil", "Aftershave Balm", "Face Wash", "Shaving Foam"],
    "Sun care": ["Sunscreen SPF 50", "After-sun Gel", "Tinted SPF 30"],
    "Nails": ["Nail Polish", "Cuticle Oil", "Base Coat", "Top Coat"],
    "Accessories": ["Make-up Brush Set", "Jade Roller", "Cosmetic Bag", "Sponge Blender"],
    "Gift sets": ["Discovery Set", "Travel Kit", "Advent Calendar"],
}
_SIZES = ["15 ml", "30 ml", "50 ml", "75 ml", "100 ml", "150 ml", "200 ml", "3.5 g", "set"]

_IMAGES = {
    "mobile_app": ["splash.png", "onboarding_1.png", "onboarding_2.png", "onboarding_3.png", "home_banner.png",
                   "promo_tile.png", "icon.png"],
    "banners": ["spring_sale.jpg", "summer_sale.jpg", "free_delivery.png", "new_collection.jpg",
                "black_friday.jpg", "gift_cards.png"],
    "products": ["serum.jpg", "lipstick.jpg", "perfume.jpg", "shampoo.jpg", "body_lotion.jpg", "beard_oil.jpg",
                 "sunscreen.jpg", "nail_polish.jpg", "brush_set.jpg", "discovery_set.jpg", "night_cream.jpg",
                 "mascara.jpg"],
    "blog": ["skincare_routine.jpg", "sunscreen.jpg", "five_minute_make_up.jpg", "signature_scent.jpg",
             "curly_hair.jpg", "winter_skin.jpg"],
}
_IMAGE_SIZES = {"mobile_app": (180, 320), "banners": (480, 160), "products": (200, 200), "blog": (320, 200)}
_PALETTE = ["#c2185b", "#7b1fa2", "#303f9f", "#0288d1", "#00796b", "#689f38", "#f57c00", "#5d4037", "#455a64",
            "#e64a19", "#512da8", "#0097a7"]


def render_image(label: str, size: tuple[int, int], colour: str, fmt: str) -> bytes:
    """A small picture: a coloured card with a few shapes and its label, so thumbnails tell images apart."""
    base = ImageColor.getrgb(colour)
    image = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse((width * 0.55, -height * 0.3, width * 1.3, height * 0.7), fill=tuple(min(255, c + 60) for c in base))
    draw.rectangle((0, height * 0.72, width, height), fill=tuple(max(0, c - 40) for c in base))
    font = ImageFont.load_default(size=max(12, min(width, height) // 9))
    draw.text((10, height * 0.76), label, fill="white", font=font)
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, "JPEG", quality=80)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def _image_bytes(folder: str, filename: str, colour: str) -> bytes:
    label = filename.rsplit(".", 1)[0].replace("_", " ")
    fmt = "JPEG" if filename.endswith(".jpg") else "PNG"
    return render_image(label, _IMAGE_SIZES[folder], colour, fmt)


def _password_hash(password: str, salt: str) -> str:
    """werkzeug's scrypt format with a fixed salt: check_password_hash accepts it, and reseeding stays identical."""
    n, r, p = 2**15, 8, 1
    digest = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    return f"scrypt:{n}:{r}:{p}${salt}${digest}"


def _body(rng: random.Random, title: str) -> str:
    paragraphs = [" ".join(rng.sample(_SENTENCES, 3)) for _ in range(rng.randint(2, 4))]
    return f"<h1>{title}</h1>\n" + "\n".join(f"<p>{p}</p>" for p in paragraphs)


def build_prod() -> Dataset:
    """PROD's demo content, the same on every call."""
    rng = random.Random(SEED)
    data = Dataset()
    rows = data.rows

    rows["cms_pages"] = [{"id": i, "slug": slug, "title": title, "body": _body(rng, title)}
                         for i, (title, slug) in enumerate(_PAGES, start=1)]

    rows["gallery_folders"] = [{"id": i, "name": name} for i, name in enumerate(GALLERY_FOLDERS, start=1)]
    rows["gallery_images"] = []
    image_ids: dict[str, int] = {}
    for folder_id, folder in enumerate(GALLERY_FOLDERS, start=1):
        for filename in _IMAGES[folder]:
            image_id = len(rows["gallery_images"]) + 1
            rows["gallery_images"].append({"id": image_id, "folder_id": folder_id, "filename": filename})
            image_ids[f"{folder}/{filename}"] = image_id
            data.files[f"{folder}/{filename}"] = _image_bytes(folder, filename, _PALETTE[image_id % len(_PALETTE)])

    rows["sliders"] = [{"id": 1, "name": "Home page hero"}, {"id": 2, "name": "Mobile app home"},
                       {"id": 3, "name": "Skincare category"}]
    slides = [
        (1, "banners/spring_sale.jpg", "Spring sale: up to 40% off skincare"),
        (1, "banners/new_collection.jpg", "The new collection is here"),
        (1, "banners/free_delivery.png", "Free delivery from 149 zł"),
        (1, "banners/gift_cards.png", "Gift cards for every occasion"),
        (2, "mobile_app/home_banner.png", "Welcome to the app"),
        (2, "mobile_app/promo_tile.png", "App-only offers every Friday"),
        (2, "mobile_app/onboarding_2.png", "Scan a product to see reviews"),
        (3, "products/serum.jpg", "Serums for every skin type"),
        (3, "products/night_cream.jpg", "Wake up to softer skin"),
        (3, "products/sunscreen.jpg", "SPF every day"),
    ]
    positions: dict[int, int] = {}
    rows["slides"] = []
    for i, (slider_id, image, caption) in enumerate(slides, start=1):
        positions[slider_id] = positions.get(slider_id, 0) + 1
        rows["slides"].append({"id": i, "slider_id": slider_id, "image_id": image_ids[image],
                               "position": positions[slider_id], "caption": caption})

    rows["categories"] = [{"id": i, "name": name} for i, name in enumerate(_CATEGORIES, start=1)]
    rows["products"] = []
    names: set[str] = set()
    while len(rows["products"]) < 200:
        category_id = rng.randint(1, len(_CATEGORIES))
        kind = rng.choice(_PRODUCT_TYPES[_CATEGORIES[category_id - 1]])
        name = f"{rng.choice(_BRANDS)} {kind} {rng.choice(_SIZES)}"
        if name in names:
            continue
        names.add(name)
        product_id = len(rows["products"]) + 1
        rows["products"].append({"id": product_id, "sku": f"SKU-{10000 + product_id}", "name": name,
                                 "price": Decimal(rng.randint(1999, 45999)) / 100, "category_id": category_id})

    rows["system_settings"] = sorted([
        {"key": "mobile_app.home", "value": _json({
            "hero": {"title": "Spring sale", "image": "mobile_app/home_banner.png", "link": "/c/skincare"},
            "tiles": [
                {"title": "App-only offers", "image": "mobile_app/promo_tile.png", "link": "/offers"},
                {"title": "New in", "image": "mobile_app/onboarding_1.png", "link": "/new"},
            ],
        })},
        {"key": "mobile_app.onboarding", "value": _json({"screens": [
            {"title": "Discover", "text": "Thousands of products in your pocket.", "image": "mobile_app/onboarding_1.png"},
            {"title": "Scan", "text": "Scan a product to read its reviews.", "image": "mobile_app/onboarding_2.png"},
            {"title": "Collect", "text": "Earn loyalty points with every order.", "image": "mobile_app/onboarding_3.png"},
        ]})},
        {"key": "mobile_app.splash", "value": _json({"background_image": "mobile_app/splash.png", "duration_ms": 1500})},
        {"key": "mobile_app.theme", "value": _json({"primary_color": "#c2185b", "icon_image": "mobile_app/icon.png"})},
        {"key": "shop.name", "value": "Example Beauty"},
        {"key": "shop.email", "value": "hello@example.com"},
        {"key": "shop.currency", "value": "PLN"},
        {"key": "seo.default_title", "value": "Example Beauty: skincare, make-up and fragrance"},
        {"key": "seo.default_description", "value": "Cosmetics from 200 brands, free delivery from 149 zł."},
        {"key": "checkout.free_delivery_from", "value": "149.00"},
        {"key": "checkout.min_order_value", "value": "20.00"},
        {"key": "mail.footer", "value": "Example Beauty, ul. Przykładowa 1, 60-001 Poznań"},
        {"key": "integrations.analytics_id", "value": "G-EXAMPLE123"},
    ], key=lambda row: row["key"])

    salt_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    staff = [*LOGINS, ("anna.nowak@example.com", "anna", "editor")]
    rows["users"] = [{"id": i, "email": email, "role": role,
                      "password_hash": _password_hash(password, "".join(rng.choices(salt_chars, k=16)))}
                     for i, (email, password, role) in enumerate(staff, start=1)]

    start = datetime(2025, 9, 1, 8, 0)
    statuses = ["new", "paid", "shipped", "delivered", "delivered", "delivered", "cancelled"]
    rows["orders"] = [{"id": i, "number": f"ORD-2025-{i:05d}", "customer_email": f"customer{rng.randint(1, 400)}@example.org",
                       "total": Decimal(rng.randint(2500, 89900)) / 100, "status": rng.choice(statuses),
                       "created_at": start + timedelta(minutes=rng.randint(0, 60 * 24 * 120))}
                      for i in range(1, 61)]
    authors = ["Ola", "Marta", "Kasia", "Tomek", "Julia", "Piotr", "Ewa", "Zosia", "Adam", "Natalia"]
    opinions = ["Lovely texture, absorbs quickly.", "Smells great and lasts all day.", "Too sticky for me.",
                "My skin has never been better.", "Good value for money.", "Arrived quickly, well packed.",
                "Nice, but the pump broke after a week.", "Bought it again, a favourite."]
    rows["reviews"] = [{"id": i, "product_id": rng.randint(1, 200), "author": rng.choice(authors),
                        "rating": rng.randint(2, 5), "text": rng.choice(opinions)} for i in range(1, 121)]
    codes = ["WELCOME10", "SPRING25", "SUMMER20", "APP15", "LOYAL5", "BLACKFRIDAY", "XMAS30", "NEWSLETTER10",
             "SKINCARE20", "FREESHIP", "BIRTHDAY15", "STUDENT10"]
    rows["promotion_codes"] = [{"id": i, "code": code, "discount_percent": rng.choice([5, 10, 15, 20, 25, 30])}
                               for i, code in enumerate(codes, start=1)]
    rows["campaigns"] = [{"id": i, "name": name, "starts_on": day} for i, (name, day) in enumerate([
        ("Spring sale 2025", date(2025, 3, 20)), ("Summer sale 2025", date(2025, 6, 21)),
        ("Back to school", date(2025, 9, 1)), ("Black Friday 2025", date(2025, 11, 28)),
        ("Christmas 2025", date(2025, 12, 1)), ("New year, new skin", date(2026, 1, 2)),
    ], start=1)]
    messages = {"cart.add": ("Add to cart", "Dodaj do koszyka", "In den Warenkorb"),
                "cart.empty": ("Your cart is empty", "Twój koszyk jest pusty", "Ihr Warenkorb ist leer"),
                "checkout.pay": ("Pay now", "Zapłać teraz", "Jetzt bezahlen"),
                "product.reviews": ("Reviews", "Opinie", "Bewertungen"),
                "product.in_stock": ("In stock", "Dostępny", "Auf Lager"),
                "account.login": ("Log in", "Zaloguj się", "Anmelden"),
                "account.logout": ("Log out", "Wyloguj się", "Abmelden"),
                "newsletter.signup": ("Sign up", "Zapisz się", "Anmelden"),
                "search.placeholder": ("Search products", "Szukaj produktów", "Produkte suchen"),
                "delivery.free": ("Free delivery", "Darmowa dostawa", "Kostenloser Versand")}
    rows["translations"] = []
    for msgid, texts in messages.items():
        for language, text in zip(("en", "pl", "de"), texts, strict=True):
            rows["translations"].append({"id": len(rows["translations"]) + 1, "language": language,
                                         "msgid": msgid, "text": text})
    rows["titles"] = [{"id": i, "name": name} for i, name in enumerate(["Ms", "Mrs", "Mr", "Mx", "Dr"], start=1)]
    rows["payment_types"] = [{"id": i, "name": name} for i, name in enumerate(
        ["Card", "BLIK", "Bank transfer", "PayPal", "Cash on delivery"], start=1)]
    rows["delivery_types"] = [{"id": i, "name": name, "price": Decimal(price)} for i, (name, price) in enumerate(
        [("Courier", "14.99"), ("Parcel locker", "9.99"), ("Click and collect", "0.00"), ("Express courier", "24.99")],
        start=1)]
    rows["seo_settings"] = [{"id": i, "path": f"/{slug}", "meta_title": f"{title} | Example Beauty"}
                            for i, (title, slug) in enumerate(_PAGES[:12], start=1)]
    questions = {
        "What is your skin type?": ["Dry", "Oily", "Combination", "Sensitive"],
        "What worries you most?": ["Wrinkles", "Blemishes", "Dullness", "Redness"],
        "How much time do you spend on your routine?": ["Five minutes", "Fifteen minutes", "As long as it takes"],
        "Do you prefer fragrance-free products?": ["Yes", "No"],
        "Which finish do you like?": ["Matte", "Dewy", "Natural"],
    }
    rows["beauty_advisor_questions"] = [{"id": i, "text": text} for i, text in enumerate(questions, start=1)]
    rows["beauty_advisor_answers"] = [
        {"id": i, "question_id": question_id, "text": text, "product_sku": f"SKU-{10000 + rng.randint(1, 120)}"}
        for i, (question_id, text) in enumerate(
            ((qid, text) for qid, texts in enumerate(questions.values(), start=1) for text in texts), start=1)
    ]
    return data


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _row(rows: Rows, table: str, **match: Any) -> dict[str, Any]:
    return next(row for row in rows[table] if all(row[k] == v for k, v in match.items()))


def build_pair() -> tuple[Dataset, Dataset, list[Difference]]:
    """PROD, TEST (a copy of PROD, then changed on either side as a shop's teams would) and the differences."""
    prod = build_prod()
    test = copy.deepcopy(prod)
    diffs: list[Difference] = []
    next_page = len(_PAGES) + 1

    # New on TEST.
    test.rows["cms_pages"].append({"id": next_page + 1, "slug": "winter-campaign-2026", "title": "Winter campaign 2026",
                                   "body": "<h1>Winter campaign 2026</h1>\n<p>Cosy skincare for cold days: up to 30% off.</p>"})
    diffs.append(Difference("new on TEST", "cms_pages", next_page + 1, "CMS page “Winter campaign 2026”"))
    new_product = len(prod.rows["products"]) + 1
    test.rows["products"].append({"id": new_product, "sku": f"SKU-{10000 + new_product}",
                                  "name": "Lumière Winter Glow Set", "price": Decimal("189.00"), "category_id": 10})
    diffs.append(Difference("new on TEST", "products", new_product, "product “Lumière Winter Glow Set”"))
    new_image = len(prod.rows["gallery_images"]) + 1
    test.rows["gallery_images"].append({"id": new_image, "folder_id": 1, "filename": "winter_banner.png"})
    test.files["mobile_app/winter_banner.png"] = _image_bytes("mobile_app", "winter_banner.png", "#1565c0")
    diffs.append(Difference("new on TEST", "gallery_images", new_image, "image mobile_app/winter_banner.png"))

    # Modified on TEST.
    page = _row(test.rows, "cms_pages", slug="delivery")
    page["body"] += "\n<p>From 1 December 2026 parcel lockers are free for orders above 99 zł.</p>"
    diffs.append(Difference("modified on TEST", "cms_pages", page["id"], "CMS page “Delivery”: body"))
    product = _row(test.rows, "products", id=7)
    product["price"] = product["price"] + Decimal("10.00")
    diffs.append(Difference("modified on TEST", "products", 7, "product price raised by 10.00"))
    slide = _row(test.rows, "slides", id=1)
    slide["caption"] = "Winter sale: up to 30% off skincare"
    diffs.append(Difference("modified on TEST", "slides", 1, "slide caption"))
    setting = _row(test.rows, "system_settings", key="mobile_app.home")
    home = json.loads(setting["value"])
    home["hero"] = {"title": "Winter campaign", "image": "mobile_app/winter_banner.png", "link": "/winter"}
    setting["value"] = _json(home)
    diffs.append(Difference("modified on TEST", "system_settings", "mobile_app.home",
                            "mobile-app home JSON: hero points at mobile_app/winter_banner.png"))
    test.files["mobile_app/splash.png"] = _image_bytes("mobile_app", "splash.png", "#263238")
    splash = _row(test.rows, "gallery_images", filename="splash.png")
    diffs.append(Difference("modified on TEST", "gallery_images", splash["id"],
                            "file mobile_app/splash.png: new picture, same name"))

    # Deleted on TEST (nothing refers to either by a foreign key).
    test.rows["products"] = [row for row in test.rows["products"] if row["id"] != 150]
    diffs.append(Difference("deleted on TEST", "products", 150, "a product"))
    old_page = _row(test.rows, "cms_pages", slug="spring-sale-2025")
    test.rows["cms_pages"].remove(old_page)
    diffs.append(Difference("deleted on TEST", "cms_pages", old_page["id"], "CMS page “Spring sale 2025”"))

    # Changed on PROD since the copy.
    changed = _row(prod.rows, "slides", id=2)
    changed["image_id"] = _row(prod.rows, "gallery_images", filename="summer_sale.jpg")["id"]
    diffs.append(Difference("changed on PROD", "slides", 2, "changed slider graphics on PROD: new image"))

    # Both teams created a page after the copy; each got the next free id.
    prod.rows["cms_pages"].append({"id": next_page, "slug": "store-opening-krakow", "title": "Store opening in Kraków",
                                   "body": "<h1>Store opening in Kraków</h1>\n<p>Visit us at Rynek Główny 1.</p>"})
    test.rows["cms_pages"].append({"id": next_page, "slug": "summer-campaign-2026", "title": "Summer campaign 2026",
                                   "body": "<h1>Summer campaign 2026</h1>\n<p>Sun care essentials.</p>"})
    diffs.append(Difference("same-ID collision", "cms_pages", next_page,
                            "“Store opening in Kraków” on PROD, “Summer campaign 2026” on TEST"))
    for dataset in (prod, test):
        dataset.rows["cms_pages"].sort(key=lambda row: row["id"])
    return prod, test, diffs


# --- writing --------------------------------------------------------------------------------

def is_empty(engine: sa.Engine) -> bool:
    existing = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        return not any(conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
                       for table in shop_tables() if table.name in existing)


def _folders_to_clear(engine: sa.Engine) -> set[str]:
    names = set(GALLERY_FOLDERS)
    if "gallery_folders" in sa.inspect(engine).get_table_names():
        with engine.connect() as conn:
            folders = db.metadata.tables["gallery_folders"]
            names.update(conn.execute(sa.select(folders.c.name)).scalars())
    return names


def write_environment(engine: sa.Engine, media_root: Path, data: Dataset, *, reset: bool) -> None:
    """Create every table (the shop's and envsync's) and write ``data``; with ``reset``, drop them first."""
    media_root = Path(media_root)
    if reset:
        # Only the gallery's folders are removed: the media root may hold other things of the shop.
        for name in sorted(_folders_to_clear(engine)):
            try:
                shutil.rmtree(resolve_media_path(media_root, relative_media_path(None, name)), ignore_errors=True)
            except UnsafePath:
                continue
        db.metadata.drop_all(engine)
    db.metadata.create_all(engine)
    with engine.begin() as conn:
        for table in shop_tables():
            if data.rows.get(table.name):
                conn.execute(table.insert(), data.rows[table.name])
        if engine.dialect.name == "postgresql":
            _advance_sequences(conn)
    for relative, content in sorted(data.files.items()):
        path = resolve_media_path(media_root, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _advance_sequences(conn: sa.Connection) -> None:
    # Rows were written with explicit ids; move each id sequence past them so the back office can add rows.
    for table in shop_tables():
        if "id" in table.c and table.c.id.primary_key and isinstance(table.c.id.type, sa.Integer):
            next_id = sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0) + 1).scalar_subquery()
            sequence = sa.func.pg_get_serial_sequence(table.name, "id")
            conn.execute(sa.select(sa.func.setval(sequence, next_id, False)))


def seed(prod_engine: sa.Engine, test_engine: sa.Engine, prod_media: Path, test_media: Path, *,
         reset: bool = False) -> list[Difference]:
    """Fill PROD and TEST with the demo content; returns how TEST differs from PROD.

    Refuses (DemoDataExists) when either environment already holds shop data and ``reset`` is False.
    """
    if not reset:
        for name, engine in (("PROD", prod_engine), ("TEST", test_engine)):
            if not is_empty(engine):
                raise DemoDataExists(f"{name} already has data ({engine.url.render_as_string()}); "
                                     "run `flask --app example_host demo-data --reset` to drop and recreate both.")
    prod, test, diffs = build_pair()
    write_environment(prod_engine, prod_media, prod, reset=reset)
    write_environment(test_engine, test_media, test, reset=reset)
    return diffs


@click.command("demo-data")
@click.option("--reset", is_flag=True, help="Drop every table in both environments and recreate the demo content.")
@with_appcontext
def demo_data_command(reset: bool) -> None:
    """Create every table in PROD and TEST and fill them with demo content (TEST: PROD plus a few changes)."""
    from envsync_plugin import current_envsync

    environments = current_envsync.environments
    prod, test = environments["PROD"], environments["TEST"]
    diffs = seed(prod.engine, test.engine, prod.media_root, test.media_root, reset=reset)
    db.engine.dispose()  # the back office's own pool may hold connections to tables that were just recreated
    for env in (prod, test):
        click.echo(f"{env.name}: database {env.engine.url.render_as_string()}")
        click.echo(f"{' ' * len(env.name)}  media    {env.media_root}")
    click.echo("TEST differs from PROD:")
    for diff in diffs:
        click.echo(f"  - {diff.kind}: {diff.table} {diff.key}: {diff.what}")
    click.echo("Logins: " + ", ".join(f"{email} / {password} ({role})" for email, password, role in LOGINS))
