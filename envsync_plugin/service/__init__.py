"""The use cases the views and the CLI call: nothing else reaches into RQ, the jobs or the engine."""

from __future__ import annotations

from . import base, comparisons, messages, synchronizations
from .base import *  # noqa: F403
from .comparisons import *  # noqa: F403
from .messages import *  # noqa: F403
from .synchronizations import *  # noqa: F403

__all__ = [*base.__all__, *comparisons.__all__, *messages.__all__, *synchronizations.__all__]
