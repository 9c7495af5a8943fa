"""Exceptions raised by the steering package."""

from __future__ import annotations


class SteeringError(Exception):
    """Base class for steering errors (mood prompts, standing controls)."""


class MoodParseError(SteeringError):
    """A mood prompt that cannot be understood at all.

    The message says what is wrong and what to write instead; the API returns it to the user
    as it is.
    """


class MoodTooLongError(MoodParseError):
    """A mood prompt longer than the allowed number of characters; the message states the limit."""
