"""Exceptions raised by the experiments package."""

from __future__ import annotations


class ExperimentError(Exception):
    """Base class of every error raised by :mod:`pipelines.experiments`."""


class ExperimentDefinitionError(ExperimentError, ValueError):
    """An experiment definition (YAML file or mapping) that cannot be used as given.

    The message names the experiment or arm, the bad field and, where there is a closed set of
    choices, lists the valid ones. It subclasses :class:`ValueError` so that pydantic validators
    may raise it directly.
    """


class StatsInputError(ExperimentError, ValueError):
    """Data handed to a statistics, interleaving or off-policy function that it cannot use.

    Examples: arrays of different lengths, too few observations for a variance, non-finite
    values, propensities outside ``(0, 1]``.
    """
