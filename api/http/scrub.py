"""Scrub what unauthenticated callers can read: public answers (``/healthz``) carry no
filesystem paths (they tell an attacker where data and models live and who runs the server)."""

from __future__ import annotations

import re
from typing import Any

#: A path of two or more separators (POSIX or Windows, absolute or relative), quoted or not.
_PATH = re.compile(r"(?:\b[A-Za-z]:|[\w.~-]+)?(?:[\\/][^\\/\s'\"`:,;()\[\]{}<>|]+){2,}[\\/]?")
PATH_PLACEHOLDER = "<path>"


def scrub_paths(value: Any) -> Any:
    """``value`` with every filesystem path in its strings (at any depth of dicts and lists)
    replaced by ``<path>``; other values are returned as they are."""
    if isinstance(value, str):
        return _PATH.sub(PATH_PLACEHOLDER, value)
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_paths(v) for v in value]
    return value
