"""Import of optional modules: packages that plug components, routes or commands into the core."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


def import_optional(name: str) -> ModuleType | None:
    """Import ``name``, or return None when it (or a package on its path) does not exist.

    An import error raised *inside* an existing module (a missing dependency, a bug) propagates:
    only the absence of the optional module itself is tolerated.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name
        if missing is not None and (name == missing or name.startswith(missing + ".")):
            return None
        raise


def installed(engine: object, attr: str, install: Callable[[Any], object]) -> Any:
    """The services an extension keeps on ``engine.<attr>``, running its ``install(engine)``
    first when they are absent (each package's ``*_of(engine)`` accessor)."""
    svc = getattr(engine, attr, None)
    if svc is None:
        install(engine)
        svc = getattr(engine, attr, None)
    if svc is None:
        msg = f"installing {attr!r} did not set engine.{attr}"
        raise RuntimeError(msg)
    return svc
