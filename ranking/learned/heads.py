"""The actions the learned ranker predicts (its heads), their labels and the graded relevance.

Each head is a binary classifier of one action taken on a clip after an impression, within the
label window. Labels are built from the events of the same user and clip that followed the
impression (see :func:`ranking.learned.training.build_examples`):

============  =====================================================
head          positive when, after the impression, the user ...
============  =====================================================
long_view     watched at least 60% of the clip (a ``view`` event)
like          liked it
comment       commented on it
remix         remixed it
share         shared it
follow        followed its creator from it
skip          skipped it
negative      asked to see less of it or reported it
============  =====================================================

The lambdarank ranker learns a graded relevance of the same actions (:func:`relevance_expr`).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

LONG_VIEW_FRACTION = 0.6


@dataclass(frozen=True)
class Head:
    """One predicted action: its name and the event types whose presence makes it positive."""

    name: str
    event_types: tuple[str, ...]
    description: str


HEADS: tuple[Head, ...] = (
    Head("long_view", ("view",), "watched at least 60% of the clip"),
    Head("like", ("like",), "liked the clip"),
    Head("comment", ("comment",), "commented on the clip"),
    Head("remix", ("remix",), "remixed the clip"),
    Head("share", ("share",), "shared the clip"),
    Head("follow", ("follow",), "followed the creator from the clip"),
    Head("skip", ("skip",), "skipped the clip"),
    Head("negative", ("see_less", "report"), "asked to see less of it or reported it"),
)
HEAD_NAMES: tuple[str, ...] = tuple(h.name for h in HEADS)
LABEL_EVENT_TYPES: tuple[str, ...] = tuple(sorted({t for h in HEADS for t in h.event_types}))


def event_flag_exprs() -> list[pl.Expr]:
    """Per-event 0/1 flags, one per head (``view`` counts only when it is a long view)."""
    et = pl.col("event_type")
    out = []
    for h in HEADS:
        if h.name == "long_view":
            flag = (et == "view") & (pl.col("watch_frac").fill_null(0.0) >= LONG_VIEW_FRACTION)
        else:
            flag = et.is_in(list(h.event_types))
        out.append(flag.cast(pl.Int8).alias(h.name))
    return out


def relevance_expr() -> pl.Expr:
    """Graded relevance for lambdarank, from the head labels.

    0 nothing (or a negative signal: see-less/report overrides everything), 1 a long view,
    2 a like or a follow, 3 a comment, share or remix, 4 two or more of those.
    """
    strong = pl.col("comment") + pl.col("share") + pl.col("remix")
    rel = (
        pl.when(pl.col("negative") > 0)
        .then(0)
        .when(strong >= 2)
        .then(4)
        .when(strong >= 1)
        .then(3)
        .when((pl.col("like") + pl.col("follow")) > 0)
        .then(2)
        .when(pl.col("long_view") > 0)
        .then(1)
        .otherwise(0)
    )
    return rel.cast(pl.Int32).alias("relevance")
