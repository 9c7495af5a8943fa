"""Column helpers shared by the state's parts: polars columns to numpy, runs and groups."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl


def to_epoch(ts: Any) -> float:
    """Seconds since the epoch for a naive-UTC or aware datetime (numbers pass through)."""
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    return float(ts)


def float_col(df: pl.DataFrame, name: str) -> np.ndarray:
    """A nullable number column as float64 (nulls as 0)."""
    if name not in df.columns:
        return np.zeros(df.height)
    return df[name].fill_null(0.0).to_numpy().astype(np.float64)


def col(df: pl.DataFrame, name: str, default: Any) -> np.ndarray:
    """A column as numpy with nulls as ``default`` (all ``default`` when it is absent)."""
    if name not in df.columns:
        return np.full(df.height, default)
    return df[name].fill_null(default).to_numpy()


def list_col(df: pl.DataFrame, name: str, default: Any) -> list[Any]:
    """A column as a Python list with nulls as ``default`` (all ``default`` when absent)."""
    if name not in df.columns:
        return [default] * df.height
    return [default if v is None else v for v in df[name].to_list()]


def epoch_col(df: pl.DataFrame, name: str) -> np.ndarray:
    """A datetime (or epoch seconds) column as float64 epoch seconds (now when absent)."""
    if name not in df.columns:
        return np.full(df.height, time.time())
    s = df[name]
    if s.dtype == pl.Datetime or isinstance(s.dtype, pl.Datetime):
        return s.dt.epoch("us").fill_null(0).to_numpy().astype(np.float64) / 1e6
    return s.fill_null(time.time()).to_numpy().astype(np.float64)


def runs(sorted_keys: np.ndarray) -> list[tuple[int, int, int]]:
    """``(key, start, stop)`` of each run of equal keys in a sorted array."""
    if sorted_keys.size == 0:
        return []
    cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [sorted_keys.size]])
    return list(zip(sorted_keys[starts].tolist(), starts.tolist(), stops.tolist(), strict=True))


def groups(keys: np.ndarray, values: np.ndarray) -> list[tuple[int, list[int]]]:
    """The values of each key (keys ascending, values in their original order)."""
    order = np.argsort(keys, kind="stable")
    vals = values[order].tolist()
    return [(k, vals[lo:hi]) for k, lo, hi in runs(keys[order])]
