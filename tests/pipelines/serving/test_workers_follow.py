"""Two serving workers on one PostgreSQL store: what one writes, the other applies.

Each test opens two engines (two workers: each with its own data folder, as on two machines,
sharing the store and the signing secrets) on one small demo world built into a database this
module creates and drops, and drives the second engine's follower by hand (``poll()``), so the
test decides when the other worker has caught up. Skipped with the reason when no PostgreSQL
server answers at ``STEERFEED_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import SecretStr

from pipelines.serving.engine import Engine, open_engine
from pipelines.serving.erasure import erase_user
from pipelines.serving.follower import StoreFollower, follow_store
from pipelines.serving.settings import FollowSettings, SteerfeedSettings
from storage.fence import UserErasedError
from storage.settings import StorageSettings
from tests.conftest import copy_world
from tests.pipelines.serving.conftest import PSEUDONYM, SECRET
from tests.storage.test_store_contract import _PG_SKIP

pytestmark = pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))


def _open(url: str, data_dir: Path) -> Engine:
    storage = StorageSettings(
        data_dir=data_dir,
        db_url=url,
        secret_key=SecretStr(SECRET),
        pseudonym_key=SecretStr(PSEUDONYM),
    )
    # The thread polls rarely: each test calls poll() when the other worker should catch up.
    follow = FollowSettings(interval_s=10.0)
    return open_engine(data_dir, SteerfeedSettings(storage=storage, follow=follow))


@pytest.fixture()
def workers(
    pg_world: tuple[str, Path], tmp_path: Path
) -> Iterator[tuple[Engine, Engine, StoreFollower, StoreFollower]]:
    url, src = pg_world
    a = _open(url, copy_world(src, tmp_path / "a"))
    b = _open(url, copy_world(src, tmp_path / "b"))
    fa, fb = follow_store(a), follow_store(b)
    assert fa is not None and fb is not None
    try:
        yield a, b, fa, fb
    finally:
        a.close()
        b.close()


def _user(engine: Engine) -> int:
    return min(engine.state.profiles.users)


def _event(user_id: int, item_id: int, kind: str, **extra: object) -> pl.DataFrame:
    now = datetime.now(UTC).replace(tzinfo=None)
    return pl.DataFrame(
        [
            {
                "event_id": uuid.uuid4().hex,
                "user_id": user_id,
                "item_id": item_id,
                "event_type": kind,
                "ts": now,
                **extra,
            }
        ]
    )


def test_an_event_acknowledged_by_one_worker_counts_once_in_the_other(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, fa, fb = workers
    fa.poll(), fb.poll()
    item = int(a.state.catalogue.item_ids[0])
    likes = a.state.engagement.counts[:, 3]  # COUNTERS[3] == "likes"
    row = int(a.state.catalogue.rows([item])[0])
    before_a, before_b = float(likes[row]), float(b.state.engagement.counts[row, 3])
    assert a.ingest_events(_event(_user(a), item, "like")) == 1
    assert fb.poll().events == 1
    assert fa.poll().events == 0  # its own row: applied when it was written
    assert float(a.state.engagement.counts[row, 3]) == before_a + 1
    assert float(b.state.engagement.counts[row, 3]) == before_b + 1
    assert fb.poll().events == 0  # and never twice


def test_governor_minutes_add_up_across_workers(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, fa, fb = workers
    uid = sorted(a.state.profiles.users)[3]
    now = datetime.now(UTC).replace(tzinfo=None)
    item = int(a.state.catalogue.item_ids[1])
    fa.poll(), fb.poll()

    def seconds(eng: Engine, at: datetime = now) -> float:
        return eng.wellbeing.governor.view(uid, at).usage.seconds_today

    start = seconds(a)
    assert seconds(b) == pytest.approx(start)
    # Views half through each worker.
    for n, eng in enumerate((a, b) * 4):
        at = now - timedelta(minutes=8 - n)
        eng.ingest_events(_event(uid, item, "view", watch_s=50.0, watch_frac=1.0, ts=at))
    fa.poll(), fb.poll()
    later = datetime.now(UTC).replace(tzinfo=None)
    used = seconds(a, later) - start
    assert used > 0
    assert seconds(b, later) - start == pytest.approx(used)
    # Counted once: what each worker holds is what the store's log gives when read afresh
    # (the scan counts events received by then).
    a.wellbeing.governor.warm(later)
    assert seconds(a, later) - start == pytest.approx(used)


def test_pages_alternating_between_workers_never_repeat(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, _fa, _fb = workers
    uid = sorted(a.state.profiles.users)[5]
    seen: list[int] = []
    cursor = None
    for eng in (a, b, a, b, a):
        page = eng.feed(uid, limit=10, cursor=cursor)
        seen += [i.item_id for i in page.items]
        cursor = page.next_cursor
        assert cursor is not None
    assert len(seen) == len(set(seen)) == 50


def test_a_mood_set_through_one_worker_applies_on_the_others_next_page(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, _fa, fb = workers
    uid = sorted(a.state.profiles.users)[7]
    mood = a.steering.moods.create(uid, "funny cats")
    fb.poll()
    assert [m.mood_id for m in b.steering.moods.list(uid)] == [mood.mood_id]
    assert b.steering.moods.active(uid)  # compiled on the other worker too
    a.steering.moods.delete(uid, mood.mood_id)
    fb.poll()
    assert b.steering.moods.list(uid) == []


def test_rules_goals_controls_and_follows_reach_the_other_worker(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, _fa, fb = workers
    users = sorted(a.state.profiles.users)
    uid, other = users[9], users[-1]
    rule = a.steering.rules.create(uid, "no politics")
    goal = a.steering.goals.set(uid, "learn to cook")
    a.data_controls.update(uid, {"watch_time": False})
    a.add_follows(pl.DataFrame({"follower_id": [uid], "followee_id": [other]}))
    fb.poll()
    assert [r.rule_id for r in b.steering.rules.list(uid)] == [rule.rule_id]
    assert goal is not None and [g.goal_id for g in b.steering.goals.goals_of(uid)] == [
        goal.goal_id
    ]
    assert b.data_controls.get(uid).watch_time is False
    assert other in b.state.graph.following[uid]
    a.store.remove_follow(uid, other)
    a.state.graph.remove_follow(uid, other)
    fb.poll()
    assert other not in b.state.graph.following[uid]


def test_a_user_and_a_clip_made_through_one_worker_are_served_by_the_other(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, _fa, fb = workers
    new_user = max(a.state.profiles.users) + 1000
    a.add_users(pl.DataFrame({"user_id": [new_user], "age_band": ["25-34"]}))
    author = sorted(a.state.profiles.users)[2]
    new_item = int(a.state.catalogue.item_ids.max()) + 1000
    a.add_clips(
        pl.DataFrame(
            {
                "item_id": [new_item],
                "author_id": [author],
                "caption": ["a tabby cat naps in the sun"],
                "topics": [["animals"]],
            }
        )
    )
    fb.poll()
    b.require_user(new_user)
    row = int(b.state.catalogue.rows([new_item])[0])
    assert row >= 0 and bool(b.state.catalogue.has_vector[row])
    np.testing.assert_allclose(
        b.state.catalogue.vectors[row],
        a.state.catalogue.vectors[int(a.state.catalogue.rows([new_item])[0])],
        rtol=1e-6,
    )
    assert b.feed(new_user, limit=5).items


def test_an_erasure_through_one_worker_is_applied_and_swept_by_the_other(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, _fa, fb = workers
    uid = sorted(a.state.profiles.users)[11]
    item = int(b.state.catalogue.item_ids[2])
    erase_user(a, uid)
    # Before it knows, the other worker acknowledges an event of the erased person.
    b.ingest_events(_event(uid, item, "like"))
    assert b.store.scalar("SELECT count(*) FROM events WHERE user_id = ?", [uid]) == 1
    fb.poll()
    with pytest.raises((UserErasedError, Exception)):
        b.require_user(uid)
    assert uid not in b.state.profiles.users
    assert b.store.scalar("SELECT count(*) FROM events WHERE user_id = ?", [uid]) == 0
    assert b.store.scalar("SELECT count(*) FROM event_keys WHERE user_id = ?", [uid]) == 0
    # Nothing it queues for them afterwards lands.
    b.ingest_events(_event(uid, item, "like"))
    assert b.store.scalar("SELECT count(*) FROM events WHERE user_id = ?", [uid]) == 0


def test_a_rights_opt_out_registered_through_one_worker_binds_the_others_generator(
    workers: tuple[Engine, Engine, StoreFollower, StoreFollower],
) -> None:
    a, b, _fa, fb = workers
    assert b.generation.optouts.matches("a video of Captain Zorblax") == []  # cached now
    a.generation.optouts.register("Zorblax Studios", ["Captain Zorblax"], kind="character")
    fb.poll()
    assert [o.name for o in b.generation.optouts.matches("a video of Captain Zorblax")] == [
        "Captain Zorblax"
    ]
