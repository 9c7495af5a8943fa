"""Exceptions raised by the retrieval models."""

from __future__ import annotations

from ranking.errors import RankingError


class RetrievalError(RankingError):
    """Input a retrieval model cannot be fitted or queried with (the message says why)."""
