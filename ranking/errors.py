"""Exceptions raised by the ranking package."""

from __future__ import annotations


class RankingError(Exception):
    """Base class for ranking errors."""


class ContractViolation(RankingError):
    """A component broke its stage's contract (a programmer error: fails loudly)."""


class BadCursorError(RankingError):
    """A pagination cursor that is malformed, tampered with or for another user."""
