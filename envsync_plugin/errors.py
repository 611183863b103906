"""The exceptions envsync raises: one base class, one subclass per kind of refusal."""

from __future__ import annotations


class EnvSyncError(Exception):
    """Base of every error envsync raises on purpose; its message is meant for a user."""


class ConfigError(EnvSyncError):
    """Raised at start-up when an ``ENVSYNC_*`` key is missing, misspelt or has a wrong value."""


class InvalidInput(EnvSyncError):
    """Raised when a form, a command or a service call gets a value it cannot accept."""


class NotAllowed(EnvSyncError):
    """Raised when an action is not possible here or now (e.g. starting on TEST, a second synchronization)."""


class NotFound(EnvSyncError):
    """Raised when a comparison, change or synchronization id does not exist."""


class EmbeddedRedisError(EnvSyncError):
    """Raised when the embedded Redis server cannot be started or reached."""
