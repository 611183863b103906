"""envsync's own tables, defined on the host's metadata so its migrations see them.

They live in the database of the instance that runs envsync (PROD) and are never synchronized.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import sqlalchemy as sa


class ComparisonStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


class SynchronizationStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELED = "canceled"
    REVERTED = "reverted"  # it succeeded, then its changes were undone by a revert

    @property
    def finished(self) -> bool:
        return self not in (SynchronizationStatus.SCHEDULED, SynchronizationStatus.RUNNING)


class Tab(enum.StrEnum):
    """The review's tabs, in the order they are shown."""

    CONFLICT = "conflict"
    NEW = "new"
    MODIFIED = "modified"
    DELETED = "deleted"

    @property
    def title(self) -> str:
        return {"conflict": "Conflicts", "new": "New records", "modified": "Modified records",
                "deleted": "Deleted records"}[self.value]


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


@dataclass(frozen=True)
class Tables:
    """envsync's tables on one metadata."""

    comparisons: sa.Table
    changes: sa.Table
    synchronizations: sa.Table
    messages: sa.Table
    baseline: sa.Table
    comparison_parts: sa.Table

    @property
    def all(self) -> list[sa.Table]:
        return [self.comparisons, self.comparison_parts, self.changes, self.synchronizations, self.messages,
                self.baseline]


def define_tables(metadata: sa.MetaData) -> Tables:
    """Add envsync's tables to ``metadata`` (or return them if they are there already)."""
    if "envsync_comparisons" in metadata.tables:
        t = metadata.tables
        return Tables(t["envsync_comparisons"], t["envsync_changes"], t["envsync_synchronizations"],
                      t["envsync_messages"], t["envsync_baseline"], t["envsync_comparison_parts"])

    comparisons = sa.Table(
        "envsync_comparisons", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("direction", sa.String(16), nullable=False),  # "prod-to-test" | "test-to-prod"
        sa.Column("mode", sa.String(8), nullable=False),  # "all" | "new"
        sa.Column("modules", sa.JSON, nullable=False),  # list of module keys
        sa.Column("gallery_folders", sa.JSON, nullable=True),  # list of picked names, or None: all
        sa.Column("status", sa.String(16), nullable=False, default=ComparisonStatus.QUEUED.value),
        sa.Column("progress_done", sa.BigInteger, nullable=False, default=0),
        sa.Column("progress_total", sa.BigInteger, nullable=False, default=0),
        sa.Column("progress_detail", sa.JSON, nullable=True),  # {module: [done, total]}
        sa.Column("counts", sa.JSON, nullable=True),  # {tab: n}
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("base_url", sa.String(255), nullable=True),  # for the links in e-mails
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
    )
    # The work of one comparison, cut so that several workers can share it: a part is every table
    # (table_name NULL), one table, or one key range [low, high) of a large table.
    comparison_parts = sa.Table(
        "envsync_comparison_parts", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("comparison_id", sa.Integer, sa.ForeignKey("envsync_comparisons.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("module", sa.String(64), nullable=True),
        sa.Column("table_name", sa.String(128), nullable=True),
        sa.Column("low", sa.JSON, nullable=True),
        sa.Column("high", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False, default=ComparisonStatus.QUEUED.value),
        sa.Column("progress_detail", sa.JSON, nullable=True),  # {module: [done, total]} of this part
        sa.Column("error", sa.Text, nullable=True),
    )
    changes = sa.Table(
        "envsync_changes", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("comparison_id", sa.Integer, sa.ForeignKey("envsync_comparisons.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("part_id", sa.Integer, nullable=True),  # the comparison part that found it
        sa.Column("module", sa.String(64), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("key", sa.Text, nullable=False),  # the primary key as JSON
        sa.Column("tab", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),  # "insert" | "update" | "delete"
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("label", sa.Text, nullable=False, default=""),
        sa.Column("selected", sa.Boolean, nullable=False, default=False),
        sa.Column("selectable", sa.Boolean, nullable=False, default=True),
        sa.Column("source_fingerprint", sa.String(64), nullable=True),
        sa.Column("target_fingerprint", sa.String(64), nullable=True),
        sa.Column("needs", sa.JSON, nullable=True),  # [{"table_name":..., "key":...}] records it depends on
        sa.Index("ix_envsync_changes_comparison_tab", "comparison_id", "tab", "id"),
    )
    synchronizations = sa.Table(
        "envsync_synchronizations", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("comparison_id", sa.Integer, sa.ForeignKey("envsync_comparisons.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, default=SynchronizationStatus.SCHEDULED.value),
        sa.Column("test_import", sa.Boolean, nullable=False, default=False),
        sa.Column("scheduled_at", _utc(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("canceled_by", sa.String(255), nullable=True),
        sa.Column("canceled_at", _utc(), nullable=True),  # set while running: a cancel was asked for
        sa.Column("reverted_by", sa.String(255), nullable=True),
        sa.Column("reverted_at", _utc(), nullable=True),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("error_detail", sa.Text, nullable=True),
        sa.Column("mail_error", sa.Text, nullable=True),
    )
    messages = sa.Table(
        "envsync_messages", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("synchronization_id", sa.Integer, sa.ForeignKey("envsync_synchronizations.id"), nullable=True),
        sa.Column("comparison_id", sa.Integer, sa.ForeignKey("envsync_comparisons.id"), nullable=True),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("level", sa.String(16), nullable=False, default="info"),  # info | success | failure
        sa.Column("body", sa.Text, nullable=False, default=""),
        sa.Column("recipient", sa.String(255), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
    )
    # One row per synchronized record: the fingerprint both sides had after the last successful
    # synchronization. A compact (table, key) -> hash map read in key chunks, so it stays cheap
    # for millions of records.
    baseline = sa.Table(
        "envsync_baseline", metadata,
        sa.Column("table_name", sa.String(128), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
    )
    return Tables(comparisons, changes, synchronizations, messages, baseline, comparison_parts)
