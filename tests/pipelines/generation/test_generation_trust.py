"""Trust rules on the tiny world (real store, real embedder): public figures, robust opt-out
matching, rights-holder verification and notifications, and user reports."""

from __future__ import annotations

import uuid
from typing import Any

import polars as pl
import pytest

from pipelines.generation.errors import RuleViolation
from pipelines.generation.filters.clip_review import ClipReviewFilter
from pipelines.generation.filters.rights_optout import RightsOptOutFilter
from ranking.pipeline import FeedQuery
from storage.store import utcnow


def _query(uid: int) -> FeedQuery:
    return FeedQuery(user_id=uid, limit=10, now=utcnow(), session_id="s")


@pytest.mark.parametrize(
    "prompt", ["t4ylor sw1ft dancing in the rain", "Obama playing basketball", "beyonce on stage"]
)
def test_a_prompt_naming_a_listed_public_figure_is_refused(engine: Any, prompt: str) -> None:
    with pytest.raises(RuleViolation, match="protected list") as refused:
        engine.generation.check(prompt, requested_by=None)
    assert refused.value.reason == "public_figure"


def test_the_operator_list_protects_a_name_until_it_is_removed(engine: Any) -> None:
    svc = engine.generation
    prompt = "ada quil giving a keynote on a stage"
    svc.check(prompt, requested_by=None)  # not listed yet
    person = svc.people.add("Ada Quill", aliases=["Quill"])
    with pytest.raises(RuleViolation, match="Ada Quill, read as 'ada quil'") as refused:
        svc.check(prompt, requested_by=None)
    assert refused.value.reason == "public_figure"
    assert svc.people.remove(person.person_id)
    svc.check(prompt, requested_by=None)


def test_a_protected_person_who_is_a_consenting_user_may_be_their_own_cameo(engine: Any) -> None:
    svc = engine.generation
    uid = min(engine.state.profiles.users)
    other = max(engine.state.profiles.users)
    svc.people.add("Ada Quill", user_id=uid)
    prompt = "Ada Quill reading a book in a cafe"
    with pytest.raises(RuleViolation) as refused:
        svc.check(prompt, requested_by=other)
    assert refused.value.reason == "public_figure"
    svc.consents.grant(uid, "everyone")
    svc.check(prompt, requested_by=other, cameos=[uid])  # named and consenting: allowed


def test_m1ckey_mouse_is_refused_once_mickey_mouse_is_registered(engine: Any) -> None:
    """The issue's case: exact-name matching let "m1ckey mouse" through."""
    svc = engine.generation
    svc.optouts.register("Mouse House", ["Mickey Mouse"], kind="character")
    for prompt in ("m1ckey mouse surfing", "MICKEYMOUSE at the beach", "m.i.c.k.e.y mouse"):
        with pytest.raises(RuleViolation, match="Mouse House") as refused:
            svc.check(prompt, requested_by=None)
        assert refused.value.reason == "rights_opt_out"
    svc.check("a field mouse hiding in the wheat", requested_by=None)


def test_catalogue_clips_spelled_differently_are_filtered(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    n = len(st.catalogue.item_ids)
    new = pl.DataFrame(
        {
            "item_id": [10_000_001, 10_000_002],
            "author_id": [min(st.profiles.users)] * 2,
            "caption": ["my c4pt41n z0rbl4x cosplay", "a captain on a ship"],
            "topics": [["comedy"], ["comedy"]],
            "hashtags": [[], []],
            "duration_s": [10.0, 10.0],
            "created_at": [utcnow()] * 2,
        }
    )
    engine.add_clips(new, embed=False)
    assert len(st.catalogue.item_ids) == n + 2
    svc.optouts.register("Acme Studios", ["Captain Zorblax"], kind="character")
    flt = RightsOptOutFilter(st, svc.optouts)
    cands = pl.DataFrame({"item_id": [10_000_001, 10_000_002]})
    assert flt.apply(_query(min(st.profiles.users)), cands).removed["item_id"].to_list() == [
        10_000_001
    ]


def test_holder_names_wait_for_an_admin_and_the_log_shows_refusals(engine: Any) -> None:
    svc = engine.generation
    uid = min(engine.state.profiles.users)
    clip = pl.DataFrame(
        {
            "item_id": [10_000_003],
            "author_id": [uid],
            "caption": ["my c4pt41n z0rbl4x cosplay"],
            "topics": [["comedy"]],
            "hashtags": [[]],
            "duration_s": [10.0],
            "created_at": [utcnow()],
        }
    )
    engine.add_clips(clip, embed=False)
    holder, names = svc.holders.apply(
        user_id=uid, name="Acme Studios", names=["Captain Zorblax"], kind="character"
    )
    assert holder.status == "pending" and [o.status for o in names] == ["pending"]
    svc.check("captain zorblax on a skateboard", requested_by=None)  # not active yet
    out = svc.verify_holder(holder.holder_id, verified=True, note="checked the trademark")
    assert out["holder"]["status"] == "verified" and out["clips_filtered"] == 1
    [filtered] = svc.optouts.notifications(holder.holder_id, kind="clip_filtered")
    assert filtered["item_id"] == 10_000_003 and filtered["matched"] == "captain zorblax"
    with pytest.raises(RuleViolation) as refused:
        svc.submit("capt4in zorbl4x on a skateboard", requested_by=uid)
    assert refused.value.reason == "rights_opt_out"
    log = svc.optouts.notifications(holder.holder_id)
    kinds = [n["kind"] for n in log]
    assert kinds[0] == "prompt_refused" and "holder_verified" in kinds
    refusal = log[0]
    assert refusal["name"] == "Captain Zorblax" and refusal["how"] == "exact"
    assert refusal["matched"] == "captain zorblax"
    # The log never says who asked: no user field, and the prompt only as the matched words.
    assert set(refusal) == {
        "notification_id", "at", "kind", "name", "how", "matched", "item_id", "detail"
    }  # fmt: skip


def test_a_rejected_holders_names_never_take_effect(engine: Any) -> None:
    svc = engine.generation
    holder, _ = svc.holders.apply(
        user_id=min(engine.state.profiles.users), name="Squatter Ltd", names=["Sunset"], kind="work"
    )
    svc.verify_holder(holder.holder_id, verified=False, note="no evidence")
    svc.check("a sunset over the sea", requested_by=None)
    assert [o.status for o in svc.optouts.of_holder(holder.holder_id)] == ["rejected"]


def _report(engine: Any, item_id: int, users: list[int]) -> None:
    rows = [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": u,
            "item_id": item_id,
            "event_type": "report",
            "ts": utcnow(),
            "received_at": utcnow(),
        }
        for u in users
    ]
    engine.ingest_events(pl.DataFrame(rows, schema_overrides={"item_id": pl.Int64}))


def test_reports_queue_a_generated_clip_and_hide_it_after_n_reporters(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    n_hide = svc.settings.report_hide_threshold
    row = next(
        r
        for r in range(len(st.catalogue.item_ids))
        if st.catalogue.generated[r] and svc.reviews.get(int(st.catalogue.item_ids[r])) is None
    )
    item = int(st.catalogue.item_ids[row])
    # Count reports the world already had, so the test needs exactly the missing ones.
    before = int(
        engine.store.scalar(
            "SELECT count(DISTINCT user_id) FROM events WHERE item_id = ? "
            "AND event_type = 'report'",
            [item],
        )
    )
    reporters = [u for u in sorted(st.profiles.users)][: n_hide + 2]
    flt = ClipReviewFilter(svc.reviews)
    cands = pl.DataFrame({"item_id": [item]})
    if before + 1 < n_hide:
        _report(engine, item, reporters[:1])
        entry = svc.reviews.get(item)
        assert entry is not None and entry.status == "pending" and not entry.hidden
        assert flt.apply(_query(reporters[0]), cands).removed.height == 0
    _report(engine, item, reporters[:1])  # the same user twice counts once
    _report(engine, item, reporters[:n_hide])
    entry = svc.reviews.get(item)
    assert entry is not None and entry.status == "held" and entry.source == "reports"
    assert flt.apply(_query(reporters[0]), cands).removed["item_id"].to_list() == [item]
    assert svc.is_hidden(item)
    svc.restore(item, decided_by="test", note="reviewed: fine")
    assert not svc.is_hidden(item)
    _report(engine, item, reporters[:n_hide])  # old reporters again: nothing new
    entry = svc.reviews.get(item)
    assert entry is not None and entry.status == "restored" and not svc.is_hidden(item)
    fresh = sorted(st.profiles.users)[-n_hide:]
    _report(engine, item, fresh[:1])
    entry = svc.reviews.get(item)
    assert entry is not None and entry.status == "pending" and not svc.is_hidden(item)
    _report(engine, item, fresh)
    assert svc.is_hidden(item)


def test_reports_of_an_uploaded_clip_are_left_to_the_ranker_by_default(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    item = next(
        int(st.catalogue.item_ids[r])
        for r in range(len(st.catalogue.item_ids))
        if not st.catalogue.generated[r]
    )
    _report(engine, item, sorted(st.profiles.users)[:5])
    assert svc.reviews.get(item) is None
