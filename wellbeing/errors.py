"""Exceptions raised by the wellbeing package."""

from __future__ import annotations


class WellbeingError(Exception):
    """Base class for wellbeing errors."""


class GovernorSettingsError(WellbeingError, ValueError):
    """Time-limit settings or overrides that are malformed (unknown option, bad value)."""


class GovernorPermissionError(WellbeingError):
    """A settings change the caller may not make (a teen loosening their own limits)."""


class SurveyError(WellbeingError, ValueError):
    """An unknown survey question, an answer off its scale, or an impossible sampling policy."""


class PropensityModelError(WellbeingError):
    """The response-propensity model was misused (not fitted, degenerate or mismatched data)."""
