"""A "why not" lookup builds the page as a dry run: it counts as no page and logs nothing."""

from __future__ import annotations

from typing import Any

from steering.why_not import why_not


def _adult(engine: Any) -> int:
    st = engine.state
    users = [u for u, p in st.profiles.by_user.items() if not p.get("is_teen")]
    return int(
        max(
            users, key=lambda u: len(st.activity.history[u].rows) if u in st.activity.history else 0
        )
    )


def test_why_not_lookups_do_not_count_toward_the_page_cap(engine: Any) -> None:
    uid = _adult(engine)
    engine.wellbeing.governor.update_own(uid, {"max_pages_per_session": 2})
    p1 = engine.feed(uid, limit=4)
    assert p1.items
    clip = int(engine.state.catalogue.item_ids[0])
    for _ in range(3):
        why_not(engine.products["home"], engine.state, uid, clip)
    p2 = engine.feed(uid, limit=4, cursor=p1.next_cursor)
    assert p2.items, p2.stop_card


def test_why_not_logs_no_impression(engine: Any) -> None:
    uid = _adult(engine)
    engine.writer.flush()
    before = engine.store.scalar("SELECT count(*) FROM events WHERE event_type = 'impression'")
    why_not(engine.products["home"], engine.state, uid, int(engine.state.catalogue.item_ids[0]))
    engine.writer.flush()
    after = engine.store.scalar("SELECT count(*) FROM events WHERE event_type = 'impression'")
    assert after == before
