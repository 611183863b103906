"""The plugin's e-mails: a text and an HTML template each, sent through Flask-Mail."""

from __future__ import annotations

import logging

from flask import current_app, render_template
from flask_mail import Message

from .extension import current_envsync

log = logging.getLogger("envsync")


def send(template: str, recipient: str | None, subject: str, **context: object) -> str | None:
    """Send ``email/<template>.txt`` and ``.html`` to ``recipient``.

    Returns None when sent (or when there is nobody to send to), else why it could not be sent: a
    mail server that is down must never change the outcome of what the e-mail reports.
    """
    if not recipient:
        return None
    context.setdefault("environment", current_envsync.settings.current_environment)
    try:
        message = Message(
            subject=subject,
            recipients=[recipient],
            sender=current_envsync.settings.mail_sender,
            body=render_template(f"envsync/email/{template}.txt", **context),
            html=render_template(f"envsync/email/{template}.html", **context),
        )
        current_app.extensions["mail"].send(message)
    except Exception as exc:  # noqa: BLE001 - any failure of the mail server is reported, not raised
        log.warning("Could not send the e-mail %r to %s: %s", subject, recipient, exc)
        return f"The e-mail to {recipient} could not be sent: {exc}"
    return None
