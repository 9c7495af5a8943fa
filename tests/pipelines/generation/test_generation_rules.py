"""Generation rules and gap filling on the tiny world (real store, real embedder)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from pipelines.generation.errors import RuleViolation
from pipelines.generation.filters.cameo_consent import CameoConsentFilter
from pipelines.generation.filters.rights_optout import RightsOptOutFilter
from pipelines.generation.gaps import mood_gaps, queue_gaps
from ranking.pipeline import FeedQuery
from storage.store import utcnow


def _query(uid: int) -> FeedQuery:
    return FeedQuery(user_id=uid, limit=10, now=utcnow(), session_id="s")


def test_cameo_audiences_decide_who_may_use_a_likeness(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    users = sorted(st.profiles.users)
    subject = next(
        u
        for u in users
        if st.graph.friends(u)
        and svc.consents.get(u) is None
        and not st.profiles.by_user[u]["is_teen"]
    )
    friend = next(iter(st.graph.friends(subject)))
    stranger = next(u for u in users if u != subject and u not in st.graph.friends(subject))

    svc.consents.check(subject, subject)  # one's own likeness, consent or not
    with pytest.raises(RuleViolation, match="has not opted in") as no_consent:
        svc.consents.check(subject, friend)  # no consent on record: nobody else
    assert no_consent.value.reason == "cameo_consent"

    assert svc.consents.grant(subject, "only_me").audience == "none"  # the old name of none
    svc.consents.check(subject, subject)
    with pytest.raises(RuleViolation, match="has not opted in"):
        svc.consents.check(subject, friend)

    svc.consents.grant(subject, "friends")
    svc.consents.check(subject, friend)
    with pytest.raises(RuleViolation, match="only by friends"):
        svc.consents.check(subject, stranger)

    svc.consents.grant(subject, "everyone")
    svc.consents.check(subject, stranger)

    svc.revoke_consent(subject)
    with pytest.raises(RuleViolation):
        svc.consents.check(subject, stranger)
    with pytest.raises(ValueError, match="valid: none, friends, everyone"):
        svc.consents.grant(subject, "public")


def test_revoked_cameo_clips_are_removed_and_open_jobs_cancelled(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    row = next(r for r, c in enumerate(st.catalogue.cameos) if c)
    subject, item = st.catalogue.cameos[row][0], int(st.catalogue.item_ids[row])
    requester = next(u for u in sorted(st.profiles.users) if u != subject)
    svc.consents.grant(subject, "everyone")
    job = svc.submit("two friends baking bread", requested_by=requester, cameos=[subject])
    other = next(int(st.catalogue.item_ids[r]) for r, c in enumerate(st.catalogue.cameos) if not c)
    cands = pl.DataFrame({"item_id": [item, other]})
    flt = CameoConsentFilter(st, svc.consents)
    assert flt.apply(_query(requester), cands).removed.height == 0

    out = svc.revoke_consent(subject)
    assert out["cancelled_jobs"] == 1 and out["clips_filtered"] >= 1
    assert svc.queue.get(job.job_id).status == "cancelled"
    res = flt.apply(_query(requester), cands)
    assert res.removed["item_id"].to_list() == [item]
    assert svc.is_hidden(item)


def test_opted_out_names_refuse_prompts_and_filter_existing_clips(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    caption = st.catalogue.captions[5]
    svc.optouts.register("Acme Studios", ["Captain Zorblax", caption], kind="work")

    with pytest.raises(RuleViolation, match="Acme Studios") as refused:
        svc.check("captain zorblax! surfing a wave", requested_by=None)
    assert refused.value.reason == "rights_opt_out"
    svc.check("a captain surfing a wave", requested_by=None)  # a part of a name is fine

    flt = RightsOptOutFilter(st, svc.optouts)
    cands = pl.DataFrame(
        {"item_id": [int(st.catalogue.item_ids[5]), int(st.catalogue.item_ids[6])]}
    )
    removed = flt.apply(_query(min(st.profiles.users)), cands).removed["item_id"].to_list()
    assert int(st.catalogue.item_ids[5]) in removed
    [opt] = [o for o in svc.optouts.active() if o.name == caption]
    svc.optouts.remove(opt.optout_id)
    assert flt.apply(_query(min(st.profiles.users)), cands).removed.height == 0


@pytest.mark.parametrize(
    "prompt",
    [
        "a nude model on a beach",  # block list
        "a dog being kicked and beaten",  # embedding similarity (no blocked word)
        "a group of terrorists attacking a crowd",
    ],
)
def test_unsafe_prompts_are_refused(engine: Any, prompt: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        engine.generation.check(prompt, requested_by=None)
    assert exc.value.reason == "prompt_safety"


def test_safe_prompts_pass_the_safety_check(engine: Any) -> None:
    svc = engine.generation
    for prompt in ("a knight fighting a dragon in a castle", "cooking pasta in a small kitchen"):
        svc.check(prompt, requested_by=None)


def test_gap_filling_queues_prompts_for_unmet_moods_and_topics(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:

    svc = engine.generation
    uid = min(engine.state.profiles.users)
    engine.steering.moods.create(uid, "underwater volcano eruptions")
    facets = {g.subject: g for g in mood_gaps(svc)}
    assert any("volcano" in f for f in facets), facets
    assert all(g.supply < svc.settings.gap_mood_threshold for g in facets.values())

    monkeypatch.setattr(svc.settings, "gap_topic_min_fresh", 10**6)
    first = queue_gaps(svc, limit=3)
    assert first["queued"] == 3 and first["mood_gaps"] >= 1 and first["topic_gaps"] >= 1
    jobs = svc.queue.list_jobs(status="queued")
    assert {j.kind for j in jobs} == {"gap"}
    assert any("volcano" in j.prompt for j in jobs)
    assert all(j.reason for j in jobs)
    second = queue_gaps(svc, limit=3)
    assert second["duplicates"] >= 3
    prompts = [j.prompt for j in svc.queue.list_jobs(limit=100)]
    assert len(prompts) == len(set(prompts)) == 6


def test_a_remix_carries_the_original_caption_topics_and_cameos(engine: Any) -> None:
    svc = engine.generation
    st = engine.state
    row = next(
        r
        for r, c in enumerate(st.catalogue.cameos)
        if len(c) == 1 and st.catalogue.topics[r] and not st.profiles.by_user[c[0]]["is_teen"]
    )
    subject = st.catalogue.cameos[row][0]
    requester = next(u for u in sorted(st.profiles.users) if u != subject)
    svc.consents.grant(subject, "none")  # whatever the demo world recorded for them
    with pytest.raises(RuleViolation, match="opted in"):
        svc.submit(
            "the same, at night", requested_by=requester, remix_of=int(st.catalogue.item_ids[row])
        )
    svc.consents.grant(subject, "everyone")
    job = svc.submit(
        "the same, at night", requested_by=requester, remix_of=int(st.catalogue.item_ids[row])
    )
    assert job.kind == "remix" and job.remix_of == int(st.catalogue.item_ids[row])
    assert st.catalogue.captions[row] in job.prompt and subject in job.cameo_user_ids
    assert job.topics == list(st.catalogue.topics[row])
