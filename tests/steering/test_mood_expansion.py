"""A mood's expansion runs in the background: started at once, or once the API has answered;
a page that asks first starts it itself, and a deleted mood is never expanded."""

from __future__ import annotations

from typing import Any


def test_a_deferred_expansion_is_started_by_the_page_that_needs_it(engine: Any) -> None:
    moods = engine.steering.moods
    uid = min(engine.state.profiles.users)
    mood = moods.create(uid, "cooking, no news", expand=False)
    assert mood.mood_id in moods._deferred and mood.mood_id not in moods._pending
    (compiled,) = moods.active(uid)  # what a page does: starts the expansion and waits
    assert compiled.mood_id == mood.mood_id
    assert [c.text for c in compiled.facets] == ["cooking"]
    assert [c.text for c in compiled.exclusions] == ["news"]
    assert mood.mood_id not in moods._deferred
    moods.expand(mood.mood_id)  # the API's call after its answer: nothing left to do
    assert moods.active(uid)[0] is compiled
    moods.delete(uid, mood.mood_id)


def test_expand_starts_it_and_a_deleted_mood_is_never_expanded(engine: Any) -> None:
    moods = engine.steering.moods
    uid = max(engine.state.profiles.users)
    kept = moods.create(uid, "calm nature", expand=False)
    gone = moods.create(uid, "loud music", expand=False)
    moods.delete(uid, gone.mood_id)
    moods.expand(kept.mood_id)
    moods.expand(gone.mood_id)  # deleted: nothing to start
    moods.wait_compiled(timeout_s=120)
    assert kept.mood_id in moods._compiled and gone.mood_id not in moods._compiled
    assert [m.mood_id for m in moods.active(uid)] == [kept.mood_id]


def test_a_mood_is_committed_before_create_returns(engine: Any) -> None:
    moods = engine.steering.moods
    uid = min(engine.state.profiles.users)
    mood = moods.create(uid, "funny dogs", expand=False)
    # A new cursor is its own connection: it sees only committed rows.
    n = engine.store.scalar("SELECT count(*) FROM moods WHERE mood_id = ?", [mood.mood_id])
    assert n == 1
    moods.delete(uid, mood.mood_id)
