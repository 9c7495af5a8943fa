"""Side effect: log one impression event per served clip, with the features used."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

import polars as pl

from ranking.pipeline import FeedQuery


class EventSink(Protocol):
    """Anything that accepts event frames (the background writer)."""

    def submit(self, events: pl.DataFrame) -> None:
        """Queue events."""
        ...


class LogImpressionsSideEffect:
    """Writes ``impression`` events carrying request id, position, pipeline, source, the
    feature values the scorers saw (JSON), the serving propensity and experiment arms."""

    name = "log_impressions"

    def __init__(self, sink: EventSink, *, pipeline: str, features: Sequence[str]) -> None:
        self.sink = sink
        self.pipeline = pipeline
        self.features = tuple(features)

    def run(self, query: FeedQuery, page: pl.DataFrame) -> None:
        """Build and submit the impression rows."""
        if page.height == 0:
            return
        cols = [c for c in self.features if c in page.columns]
        feats = page.select(cols).to_dicts() if cols else [{}] * page.height
        scores = page["score"].to_list() if "score" in page.columns else [None] * page.height
        for f, s in zip(feats, scores, strict=True):
            f["score"] = s
        prop = page["propensity"].to_list() if "propensity" in page.columns else [1.0] * page.height
        arms = json.dumps(query.context.logged_experiments())
        n = page.height
        events = pl.DataFrame(
            {
                "event_id": [f"imp-{query.request_id}-{p}" for p in page["position"].to_list()],
                "user_id": [query.user_id] * n,
                "item_id": page["item_id"].to_list(),
                "event_type": ["impression"] * n,
                "ts": [query.now.replace(tzinfo=None)] * n,
                "received_at": [query.now.replace(tzinfo=None)] * n,
                "session_id": [query.session_id] * n,
                "request_id": [query.request_id] * n,
                "position": page["position"].to_list(),
                "pipeline": [self.pipeline] * n,
                "source": page["source"].to_list(),
                "features": [json.dumps(f, default=float) for f in feats],
                "propensity": prop,
                "experiments": [arms] * n,
            },
            schema_overrides={"ts": pl.Datetime("us"), "received_at": pl.Datetime("us")},
        )
        self.sink.submit(events)
