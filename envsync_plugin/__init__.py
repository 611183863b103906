"""envsync: System > Synchronization for a Flask-Admin shop back office (PROD <-> TEST)."""

from __future__ import annotations

from .errors import ConfigError, EnvSyncError, InvalidInput, NotAllowed, NotFound
from .extension import EnvSync, current_envsync
from .modules import FileSpec, Picker, Side, SyncModule, SyncTable

__all__ = [
    "ConfigError", "EnvSync", "EnvSyncError", "FileSpec", "InvalidInput", "NotAllowed", "NotFound",
    "Picker", "Side", "SyncModule", "SyncTable", "current_envsync",
]
