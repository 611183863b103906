"""The ``ENVSYNC_*`` configuration keys: their defaults, in one place, and their validation."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

ENVIRONMENT_NAMES = ("PROD", "TEST")

#: Every key envsync reads, with its default. ``None`` marks a required key.
DEFAULTS: dict[str, Any] = {
    "ENVSYNC_ENVIRONMENTS": None,
    "ENVSYNC_CURRENT_ENVIRONMENT": None,
    "ENVSYNC_REDIS_URL": None,
    "ENVSYNC_TIMEZONE": "UTC",
    "ENVSYNC_MAIL_SENDER": None,
    "ENVSYNC_QUEUE_NAME": "envsync",
    "ENVSYNC_COMPARISON_PART_ROWS": 400_000,
}


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment as configured: where its database and its media files live."""

    name: str
    database_url: str
    media_root: Path


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app."""

    environments: dict[str, EnvironmentConfig]
    current_environment: str
    redis_url: str | None
    timezone: ZoneInfo
    mail_sender: str
    queue_name: str
    comparison_part_rows: int

    @property
    def other_environment(self) -> str:
        return "TEST" if self.current_environment == "PROD" else "PROD"


def load_settings(config: dict[str, Any]) -> Settings:
    """Apply the defaults to ``config`` and validate every key; raise ConfigError naming the key."""
    for key, default in DEFAULTS.items():
        config.setdefault(key, default)
    for key in config:
        if key.startswith("ENVSYNC_") and key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{key} is not an envsync setting.{hint} Known keys: {', '.join(DEFAULTS)}.")

    environments = _environments(config["ENVSYNC_ENVIRONMENTS"])
    current = config["ENVSYNC_CURRENT_ENVIRONMENT"]
    if current is None:
        raise ConfigError('ENVSYNC_CURRENT_ENVIRONMENT is required: set it to "PROD" or "TEST".')
    if not isinstance(current, str) or current.upper() not in ENVIRONMENT_NAMES:
        raise ConfigError(f'ENVSYNC_CURRENT_ENVIRONMENT must be "PROD" or "TEST", not {current!r}.')

    redis_url = config["ENVSYNC_REDIS_URL"] or None
    if redis_url is not None and not (
        isinstance(redis_url, str) and redis_url.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise ConfigError(f"ENVSYNC_REDIS_URL must be a redis://, rediss:// or unix:// URL, not {redis_url!r}.")

    zone = config["ENVSYNC_TIMEZONE"]
    try:
        timezone = ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"ENVSYNC_TIMEZONE {zone!r} is not a known time zone (e.g. 'Europe/Warsaw', 'UTC').") from None

    sender = config["ENVSYNC_MAIL_SENDER"] or config.get("MAIL_DEFAULT_SENDER") or "envsync@localhost"
    if isinstance(sender, (tuple, list)):
        sender = f"{sender[0]} <{sender[1]}>"
    if not isinstance(sender, str) or "@" not in sender:
        raise ConfigError(f"ENVSYNC_MAIL_SENDER must be an e-mail address, not {sender!r}.")

    queue_name = config["ENVSYNC_QUEUE_NAME"]
    if not isinstance(queue_name, str) or not queue_name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"ENVSYNC_QUEUE_NAME must be letters, digits, '-' or '_', not {queue_name!r}.")

    part_rows = config["ENVSYNC_COMPARISON_PART_ROWS"]
    try:
        part_rows = int(part_rows)
    except (TypeError, ValueError):
        part_rows = 0
    if part_rows < 1:
        raise ConfigError(f"ENVSYNC_COMPARISON_PART_ROWS must be a whole number of rows above 0, not {config['ENVSYNC_COMPARISON_PART_ROWS']!r}.")

    return Settings(
        environments=environments,
        current_environment=current.upper(),
        redis_url=redis_url,
        timezone=timezone,
        mail_sender=sender,
        queue_name=queue_name,
        comparison_part_rows=part_rows,
    )


def _environments(value: Any) -> dict[str, EnvironmentConfig]:
    key = "ENVSYNC_ENVIRONMENTS"
    if value is None:
        raise ConfigError(
            f'{key} is required: {{"PROD": {{"database_url": ..., "media_root": ...}}, "TEST": {{...}}}}.'
        )
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{key} is not valid JSON: {exc}.") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping with the keys PROD and TEST.")
    names = {str(name).upper(): spec for name, spec in value.items()}
    missing = [name for name in ENVIRONMENT_NAMES if name not in names]
    if missing:
        raise ConfigError(f"{key} has no {' and no '.join(missing)} environment; both PROD and TEST are required.")
    unknown = sorted(set(names) - set(ENVIRONMENT_NAMES))
    if unknown:
        raise ConfigError(f"{key} names unknown environments {unknown}; only PROD and TEST are allowed.")
    result = {}
    for name in ENVIRONMENT_NAMES:
        spec = names[name]
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{key}[{name!r}] must be a mapping with database_url and media_root.")
        for field in ("database_url", "media_root"):
            if not spec.get(field) or not isinstance(spec[field], (str, Path)):
                raise ConfigError(f"{key}[{name!r}] needs {field}.")
        extra = sorted(set(spec) - {"database_url", "media_root"})
        if extra:
            raise ConfigError(f"{key}[{name!r}] has unknown fields {extra}; only database_url and media_root.")
        result[name] = EnvironmentConfig(name, str(spec["database_url"]), Path(spec["media_root"]).resolve())
    if result["PROD"].database_url == result["TEST"].database_url:
        raise ConfigError(f"{key}: PROD and TEST use the same database_url; they must be two databases.")
    if result["PROD"].media_root == result["TEST"].media_root:
        raise ConfigError(f"{key}: PROD and TEST use the same media_root; they must be two folders.")
    return result
