"""The ``steerfeed`` command line (Typer): ``app`` with every command group registered.

:mod:`api.cli.core` holds the Typer apps, the shared options and the core commands; each other
module here registers one group's commands on them when imported (listed below: a missing
module is an ImportError, never skipped).
"""

from __future__ import annotations

from api.cli import (  # noqa: F401  (importing registers the commands)
    bench,
    experiments,
    feedback,
    generation,
    models,
    retrieval,
    steering,
    wellbeing,
)
from api.cli.core import app

__all__ = ["app"]
