"""The Messages list: one message per synchronization (its title follows its state), and failed comparisons."""

from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa

from ..errors import NotFound
from ..extension import current_envsync
from .base import MessageInfo, connection, utcnow


@contextlib.contextmanager
def _writing(conn: sa.Connection | None) -> Iterator[sa.Connection]:
    """``conn`` as it is (its owner commits, with whatever else it writes), or a connection of its own
    that commits."""
    if conn is not None:
        yield conn
        return
    with connection() as own:
        yield own
        own.commit()


def add_message(*, title: str, level: str, body: str, recipient: str | None,
                synchronization_id: int | None = None, comparison_id: int | None = None,
                conn: sa.Connection | None = None) -> int:
    """Add a message; with ``conn``, in that connection's transaction (an outcome and its message are
    committed together, so nobody reads one without the other)."""
    now = utcnow()
    t = current_envsync.tables.messages
    with _writing(conn) as c:
        return c.execute(t.insert().values(
            title=title, level=level, body=body, recipient=recipient, synchronization_id=synchronization_id,
            comparison_id=comparison_id, created_at=now, updated_at=now)).inserted_primary_key[0]


def set_synchronization_message(synchronization_id: int, *, title: str, level: str, body: str,
                                recipient: str | None, conn: sa.Connection | None = None) -> int:
    """Create or update the message of a synchronization (one message follows it from scheduled to done)."""
    t = current_envsync.tables.messages
    with _writing(conn) as c:
        row = c.execute(sa.select(t.c.id).where(t.c.synchronization_id == synchronization_id)).first()
        if row is None:
            return add_message(title=title, level=level, body=body, recipient=recipient,
                               synchronization_id=synchronization_id, conn=c)
        c.execute(t.update().where(t.c.id == row.id).values(title=title, level=level, body=body, updated_at=utcnow()))
        return row.id


def get_message(message_id: int) -> MessageInfo:
    t = current_envsync.tables.messages
    with connection() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"There is no message #{message_id}.")
    return MessageInfo.from_row(row)


__all__ = ["add_message", "get_message", "set_synchronization_message"]
