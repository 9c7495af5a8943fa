"""Feedback and calibration evaluation on the demo world (``steerfeed eval feedback``).

Five measures, each over the users of one split (``tuning``: even user ids, ``held_out``: odd
ones; settings are chosen on the first, the second is reported once):

- **see-less drop**: serve a page of 20 (its impressions are logged), pick the topic with the
  most clips on it (at least two), send "see less" on every one of them, and serve the next
  page. The drop is ``1 - share_after / share_before`` (the issue's target: >= 0.6). The same
  next page served just before the feedback (same history, no "see less") is reported beside
  it, so what the feedback did is apart from what serving the first page did.
- **calibration**: five pages of ten (the session's served clips excluded, nothing logged)
  per user; Steck's miscalibration ``KL(p || q~)`` of those 50 clips' topics against the
  user's interest mix ``p`` (:meth:`~ranking.state.FeedState.topic_mix`), and the number of
  **collapsed** users: a topic fills at least half of the 50 clips and at least 20 points more
  than the user's interest in it (the 30%-finance user served 50 finance clips of 50). Both
  for the home feed and for the same feed with the uncalibrated diverse top-k selector.
- **friends' items share**: of those 50 clips, the share where a friend appears (a cameo) or
  that remixes a friend's clip, and how many such clips each user could have been served;
- **more of a rare topic**: a topic under 5% of the user's mix is marked "more of"; its clips
  on the next page of 20, before and after (the issue: "more of dance" moved 1 to 2 of 20).

Nothing here reads a label the engine would not have: the world's latent tastes stay unused.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.offline.demo import build_demo
from pipelines.serving.engine import Engine, open_engine
from ranking.pipeline import FeedQuery, RankingPipeline
from ranking.selectors.calibrated import calibration_kl
from ranking.selectors.diverse_top_k import DiverseTopKSelector

logger = logging.getLogger(__name__)

SPLITS = ("tuning", "held_out")
#: A page "collapses" onto a topic when it fills at least this share of the clips ...
COLLAPSE_SHARE = 0.5
#: ... and at least this much more than the user's interest in it.
COLLAPSE_MARGIN = 0.2


class FeedbackEvalError(Exception):
    """The evaluation cannot run as asked (unknown split, too few users)."""


def ensure_world(
    data_dir: Path, *, n_users: int, n_clips: int, n_events: int, seed: int, train: bool = False
) -> Path:
    """Build the demo world into ``data_dir`` unless the same one is already there (with
    ``train``, the author-stats and train jobs run: a learned ranker serves, as in the demo)."""
    stamp = data_dir / "eval_feedback_world.txt"
    key = f"{n_users} {n_clips} {n_events} {seed} train={train}"
    if stamp.exists() and stamp.read_text() == key:
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    jobs = ("author_stats", "train") if train else ()
    build_demo(data_dir, n_users=n_users, n_clips=n_clips, n_events=n_events, seed=seed, jobs=jobs)
    stamp.write_text(key)
    return data_dir


def in_split(user_id: int, split: str) -> bool:
    """Whether a user belongs to the split (even ids tune, odd ids are held out)."""
    return (user_id % 2 == 0) == (split == "tuning")


def _page_rows(
    pipe: RankingPipeline, uid: int, now: datetime, limit: int, exclude: frozenset[int]
) -> list[int]:
    q = FeedQuery(
        user_id=uid, limit=limit, now=now, session_id=uuid.uuid4().hex[:16], exclude_ids=exclude
    )
    return [int(r) for r in pipe.run(q, dry_run=True).page["row"].to_list()]


def _friend_item(eng: Engine, row: int, friends: set[int]) -> bool:
    st = eng.state
    if friends.intersection(st.catalogue.cameos[row]):
        return True
    parent = int(st.catalogue.remix_of[row])
    if parent < 0:
        return False
    prow = st.catalogue.row_of.get(parent)
    return prow is not None and int(st.catalogue.author[prow]) in friends


def _session(
    eng: Engine, pipe: RankingPipeline, uid: int, now: datetime, *, pages: int, per_page: int
) -> list[int]:
    served: list[int] = []
    for _ in range(pages):
        exclude = frozenset(int(eng.state.catalogue.item_ids[r]) for r in served)
        rows = _page_rows(pipe, uid, now, per_page, exclude)
        if not rows:
            break
        served += rows
    return served


def calibration_for_user(
    eng: Engine, pipe: RankingPipeline, uid: int, now: datetime, *, pages: int = 5, per: int = 10
) -> dict[str, Any] | None:
    """KL, collapse and friends' share of one user's session (``None``: no interest mix)."""
    st = eng.state
    held = st.activity.topic_mix(uid, now.replace(tzinfo=UTC).timestamp())
    if not held:
        return None
    total = sum(held.values())
    mix = {t: v / total for t, v in held.items()}  # the interest distribution (sums to 1)
    rows = _session(eng, pipe, uid, now, pages=pages, per_page=per)
    if not rows:
        return None
    topics = [str(st.catalogue.primary_topic[r]) for r in rows]
    counts = Counter(topics)
    top, n_top = counts.most_common(1)[0]
    share = n_top / len(rows)
    friends = st.graph.friends(uid)
    return {
        "kl": calibration_kl(mix, topics),
        "collapsed": share >= COLLAPSE_SHARE and share >= mix.get(top, 0.0) + COLLAPSE_MARGIN,
        "top_topic_share": share,
        "top_topic_interest": mix.get(top, 0.0),
        "friends_items": sum(_friend_item(eng, r, friends) for r in rows),
        "items": len(rows),
    }


def friend_clips_available(eng: Engine, uid: int) -> int:
    """Unseen clips where a friend appears or that remix a friend's clip."""
    st = eng.state
    friends = st.graph.friends(uid)
    if not friends:
        return 0
    seen = st.activity.seen.get(uid, set())
    return sum(
        1
        for r in range(len(st.catalogue.item_ids))
        if int(st.catalogue.item_ids[r]) not in seen and _friend_item(eng, r, friends)
    )


def _events(uid: int, item_ids: list[int], kind: str, now: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"eval-{kind}-{uuid.uuid4().hex}" for _ in item_ids],
            "user_id": [uid] * len(item_ids),
            "item_id": item_ids,
            "event_type": [kind] * len(item_ids),
            "ts": [now] * len(item_ids),
        },
        schema={
            "event_id": pl.String,
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "event_type": pl.String,
            "ts": pl.Datetime("us"),
        },
    )


def see_less_for_user(
    eng: Engine, uid: int, now: datetime, *, limit: int = 20
) -> dict[str, Any] | None:
    """Serve a page, say "see less" on every clip of its biggest topic, serve the next one.

    The events go to the serving state the way committed events do
    (:meth:`~ranking.state.FeedState.apply_events`) but not to the store, so the world on disk
    stays as built and a rerun measures the same thing.
    """
    st = eng.state
    pipe = eng.products["home"]
    rows = _page_rows(pipe, uid, now, limit, frozenset())
    if not rows:
        return None
    st.apply_events(_events(uid, [int(st.catalogue.item_ids[r]) for r in rows], "impression", now))
    topics = [str(st.catalogue.primary_topic[r]) for r in rows]
    topic, n_before = Counter(topics).most_common(1)[0]
    if n_before < 2 or not topic:
        return None
    control = _page_rows(pipe, uid, now, limit, frozenset())
    ids = [int(st.catalogue.item_ids[r]) for r, t in zip(rows, topics, strict=True) if t == topic]
    st.apply_events(_events(uid, ids, "see_less", now))
    after = _page_rows(pipe, uid, now, limit, frozenset())
    n_control = sum(str(st.catalogue.primary_topic[r]) == topic for r in control)
    n_after = sum(str(st.catalogue.primary_topic[r]) == topic for r in after)
    return {
        "topic_before": n_before,
        "topic_control": n_control,
        "topic_after": n_after,
        "drop": 1.0 - n_after / n_before,
    }


def more_of_for_user(
    eng: Engine, uid: int, now: datetime, *, limit: int = 20
) -> dict[str, Any] | None:
    """Mark a topic the user barely has (the rarest of the catalogue's topics with clips left,
    under 5% of their mix) "more of" and count its clips on the next page of ``limit``, before
    and after. The control is written to the serving state only (the store stays as built)."""
    st = eng.state
    pipe = eng.products["home"]
    held = st.activity.topic_mix(uid, now.replace(tzinfo=UTC).timestamp())
    seen = st.activity.seen.get(uid, set())
    avail = Counter(
        str(t)
        for i, t in zip(
            st.catalogue.item_ids.tolist(), st.catalogue.primary_topic.tolist(), strict=True
        )
        if t and int(i) not in seen
    )
    rare = [t for t, n in avail.items() if n >= limit and held.get(t, 0.0) < 0.05]
    if not rare:
        return None
    topic = sorted(rare, key=lambda t: (held.get(t, 0.0), t))[0]
    before = _page_rows(pipe, uid, now, limit, frozenset())
    profile = st.profiles.by_user.get(uid) or {}
    settings = dict(profile.get("settings") or {})
    st.profiles.set_user_settings(uid, {**settings, "more_of": [topic]})
    try:
        after = _page_rows(pipe, uid, now, limit, frozenset())
    finally:
        st.profiles.set_user_settings(uid, settings)
    return {
        "before": sum(str(st.catalogue.primary_topic[r]) == topic for r in before),
        "after": sum(str(st.catalogue.primary_topic[r]) == topic for r in after),
    }


def _mean_ci(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if len(a) == 0:
        return {"mean": math.nan, "ci95": math.nan, "n": 0}
    half = 1.96 * float(a.std(ddof=1)) / math.sqrt(len(a)) if len(a) > 1 else math.nan
    return {"mean": round(float(a.mean()), 4), "ci95": round(half, 4), "n": len(a)}


def run_feedback_eval(
    data_dir: Path,
    *,
    split: str = "tuning",
    users: int = 60,
    n_users: int = 300,
    n_clips: int = 4000,
    n_events: int = 60_000,
    seed: int = 7,
    train: bool = False,
) -> dict[str, Any]:
    """Run the four measures on ``users`` users of ``split``; return the JSON report."""
    if split not in SPLITS:
        msg = f"unknown split {split!r}; valid: {', '.join(SPLITS)}"
        raise FeedbackEvalError(msg)
    t0 = time.perf_counter()
    ensure_world(
        data_dir, n_users=n_users, n_clips=n_clips, n_events=n_events, seed=seed, train=train
    )
    eng = open_engine(data_dir)
    try:
        ranker = eng.learned.serving_version() or "hand_weighted"
        st = eng.state
        chosen = sorted(
            (
                u
                for u in st.activity.history
                if in_split(u, split) and len(st.activity.history[u].rows) >= 10
            ),
            key=lambda u: (-len(st.activity.history[u].rows), u),
        )[:users]
        if len(chosen) < 5:
            msg = f"only {len(chosen)} users with a history in split {split!r}"
            raise FeedbackEvalError(msg)
        home = eng.products["home"]
        baseline = replace(home, selector=DiverseTopKSelector(max_per_author=2))
        now = datetime.now(UTC).replace(tzinfo=None)
        cal: dict[str, list[dict[str, Any]]] = {"calibrated": [], "diverse_top_k": []}
        available: list[int] = []
        for u in chosen:
            for name, pipe in (("calibrated", home), ("diverse_top_k", baseline)):
                res = calibration_for_user(eng, pipe, u, now)
                if res is not None:
                    cal[name].append(res)
            available.append(friend_clips_available(eng, u))
        more = [r for u in chosen if (r := more_of_for_user(eng, u, now)) is not None]
        less = [r for u in chosen if (r := see_less_for_user(eng, u, now)) is not None]
    finally:
        eng.close()

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        items = sum(r["items"] for r in rows) or 1
        return {
            "kl": _mean_ci([r["kl"] for r in rows]),
            "collapsed_users": sum(bool(r["collapsed"]) for r in rows),
            "users": len(rows),
            "friends_items_share": round(sum(r["friends_items"] for r in rows) / items, 4),
            "users_with_a_friends_item": sum(r["friends_items"] > 0 for r in rows),
        }

    return {
        "split": split,
        "world": {
            "users": n_users,
            "clips": n_clips,
            "events": n_events,
            "seed": seed,
            "ranker": ranker,
        },
        "users": len(chosen),
        "see_less": {
            "users": len(less),
            "drop": _mean_ci([r["drop"] for r in less]),
            "users_below_0_6": sum(r["drop"] < 0.6 for r in less),
            "topic_before": round(float(np.mean([r["topic_before"] for r in less])), 2)
            if less
            else None,
            "topic_next_page_without_feedback": round(
                float(np.mean([r["topic_control"] for r in less])), 2
            )
            if less
            else None,
            "topic_after": round(float(np.mean([r["topic_after"] for r in less])), 2)
            if less
            else None,
        },
        "more_of_rare_topic": {
            "users": len(more),
            "clips_of_20_before": _mean_ci([float(r["before"]) for r in more]),
            "clips_of_20_after": _mean_ci([float(r["after"]) for r in more]),
        },
        "calibration": {k: summary(v) for k, v in cal.items()},
        "friends_clips_available_per_user": round(float(np.mean(available)), 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
