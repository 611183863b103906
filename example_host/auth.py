"""Signing in and out of the back office (Flask-Login, a Flask-WTF form with CSRF)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, redirect, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from .models import User, db

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


def login_redirect() -> Response:
    """Send the visitor to the login page, coming back to where they were afterwards."""
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def refuse() -> Response:
    """The answer to a page the visitor may not see: log in first, or 403 for a signed-in user."""
    if not current_user.is_authenticated:
        return login_redirect()
    abort(403)


def _safe_next(target: str | None) -> str:
    # Only a path on this site: an absolute or scheme-relative "next" would make the login an open redirect.
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = db.session.execute(db.select(User).filter_by(email=form.email.data.strip().lower())).scalar()
        if user is not None and check_password_hash(user.password_hash, form.password.data):
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong e-mail or password.", "error")
        status = 401
    # Rendered through the admin's index view so the page wears the back office's frame (menu, brand).
    admin = current_app.extensions["admin"][0]
    return admin.index_view.render("shop/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    # POST (with the CSRF token) so that a link elsewhere cannot sign the user out.
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.register_blueprint(bp)
