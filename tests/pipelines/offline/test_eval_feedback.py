"""The feedback / calibration evaluation's measures on the tiny world."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from pipelines.offline.eval_feedback import (
    FeedbackEvalError,
    calibration_for_user,
    in_split,
    more_of_for_user,
    run_feedback_eval,
    see_less_for_user,
)
from ranking.selectors.diverse_top_k import DiverseTopKSelector


def test_measures_on_the_tiny_world(engine: Any) -> None:
    st = engine.state
    users = sorted(st.activity.history, key=lambda u: -len(st.activity.history[u].rows))[:8]
    now = datetime.now(UTC).replace(tzinfo=None)
    home = engine.products["home"]
    baseline = replace(home, selector=DiverseTopKSelector(max_per_author=2))
    cal = [r for u in users if (r := calibration_for_user(engine, home, u, now))]
    base = [r for u in users if (r := calibration_for_user(engine, baseline, u, now))]
    assert cal and base
    assert all(r["kl"] >= 0.0 and r["items"] <= 50 for r in cal)
    # The calibrated home feed follows the users' mixes more closely than the diverse top-k.
    assert sum(r["kl"] for r in cal) / len(cal) < sum(r["kl"] for r in base) / len(base)
    more = [r for u in users if (r := more_of_for_user(engine, u, now))]
    assert more and sum(r["after"] for r in more) > sum(r["before"] for r in more)
    assert all(engine.steering.controls.get(u).more_of == [] for u in users)  # restored
    drops = [r for u in users if (r := see_less_for_user(engine, u, now))]
    assert drops
    assert sum(r["drop"] for r in drops) / len(drops) >= 0.6
    # The store is untouched: the see-less went to the serving state only.
    n = engine.store.query(
        "SELECT count(*) AS n FROM events WHERE event_type = 'see_less' AND event_id LIKE 'eval-%'"
    )["n"][0]
    assert n == 0


def test_splits_are_disjoint_and_an_unknown_split_is_refused(tmp_path: Any) -> None:
    assert in_split(4, "tuning") and not in_split(4, "held_out")
    assert in_split(5, "held_out") and not in_split(5, "tuning")
    with pytest.raises(FeedbackEvalError, match="unknown split"):
        run_feedback_eval(tmp_path, split="test")
