"""Exceptions raised by the importers."""

from __future__ import annotations


class ImporterError(Exception):
    """A file or data set that cannot be imported as given.

    The message names what is wrong (the file, the column, the bad value and how many rows
    carry it) and, where there is a closed set of choices, lists the valid ones.
    """
