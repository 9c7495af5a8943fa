"""Exceptions of the generation package."""

from __future__ import annotations


class GenerationError(Exception):
    """Base class of generation errors."""


class ModelUnavailableError(GenerationError):
    """No text-to-video model is configured, or it cannot be loaded from disk."""


class UnknownJobError(GenerationError):
    """A generation job id the queue does not hold."""


class RuleViolation(GenerationError):
    """A request refused by a rule (consent, rights-holder opt-out, prompt safety).

    Parameters
    ----------
    reason
        Machine-readable code: ``cameo_consent``, ``rights_opt_out``, ``prompt_safety`` or
        ``remix_source``.
    message
        What was refused and why, in words a person can act on.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StaleAttemptError(GenerationError):
    """An attempt that finished after it was timed out or cancelled; its clip is discarded."""
