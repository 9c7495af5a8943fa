"""The public transparency report: published figures, the hash chain, and what tampering shows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from storage.store import Store
from wellbeing.settings import TransparencySettings
from wellbeing.transparency import (
    canonical,
    entries,
    entry_hash,
    period_of,
    publish_due,
    verify,
)

SETTINGS = TransparencySettings(period_days=7, min_cohort=5, backfill_periods=3)
# Thursday of the week that starts 2026-11-23; the three periods before it get published.
NOW = datetime(2026, 11, 26, 12, 0)
WEEK = timedelta(days=7)


def _seed(store: Store, *, adults: int = 8, teens: int = 3) -> datetime:
    """Adults and teens answering the six-month question in the last published week (every
    third adult says worse, the rest better), plus one session each that week."""
    start, _ = period_of(NOW, 7)
    last = start - WEEK
    users = pl.DataFrame(
        {
            "user_id": list(range(1, adults + teens + 1)),
            "is_teen": [False] * adults + [True] * teens,
            "created_at": [datetime(2026, 1, 1)] * (adults + teens),
        }
    )
    store.add_users(users)
    with store.write() as cur:
        for uid in range(1, adults + teens + 1):
            answer = 2 if uid % 3 == 0 else 5
            cur.execute(
                "INSERT INTO survey_prompts (survey_id, user_id, question_key, kind, stratum, "
                "shown_at, page_probability, question_probability, inclusion_probability, "
                "status, answer, response_propensity) VALUES "
                "(?, ?, 'life_better_6m', 'periodic', 's', ?, 1, 1, 1, 'answered', ?, 1)",
                [f"s{uid}", uid, last + timedelta(days=1, hours=uid), answer],
            )
            cur.execute(
                "INSERT INTO session_satisfaction (user_id, session_start, session_end, "
                "minutes, n_impressions, n_views, predicted, model_version) "
                "VALUES (?, ?, ?, ?, 10, 5, 3, 'm')",
                [uid, last + timedelta(days=2), last + timedelta(days=2, minutes=14), 14.0],
            )
    return last


def test_publishes_each_completed_period_with_small_groups_suppressed(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.duckdb")
    last = _seed(store)
    published = publish_due(store, SETTINGS, now=NOW)
    assert [e.seq for e in published] == [1, 2, 3]
    assert published[-1].period_start == last and published[-1].period_end == last + WEEK
    assert publish_due(store, SETTINGS, now=NOW) == []  # nothing new is due yet
    figures = json.loads(entries(store)[-1].body)
    adults = figures["adults"]["life_better_6m"]
    # 8 adults: ids 3 and 6 answered 2 ("worse"), the other six 5.
    assert adults["people"] == 8
    assert adults["share_better"] == pytest.approx(6 / 8)
    assert adults["share_worse"] == pytest.approx(2 / 8)
    assert figures["adults"]["time_and_regret"]["minutes_per_person_per_day"] == pytest.approx(
        14 / 7, abs=0.01
    )
    # 3 teens is under the floor of 5: published as suppressed, no share.
    teens = figures["teens"]["life_better_6m"]
    assert teens == {"people": 3, "suppressed": True, "reason": "fewer than 5 people"}
    assert figures["everyone"]["life_better_6m"]["people"] == 11
    # Earlier weeks had no data: published anyway, all suppressed, so there are no gaps.
    assert json.loads(entries(store)[0].body)["everyone"]["life_better_6m"]["suppressed"]
    # A week later exactly one more period is due, linked to the head.
    more = publish_due(store, SETTINGS, now=NOW + WEEK)
    assert [e.seq for e in more] == [4] and more[0].prev_hash == published[-1].hash
    assert verify(entries(store), period_days=7, now=NOW + WEEK).ok
    store.close()


def _published(tmp_path: Path) -> Store:
    store = Store(tmp_path / "t.duckdb")
    _seed(store)
    publish_due(store, SETTINGS, now=NOW)
    assert verify(entries(store), period_days=7, now=NOW).ok
    return store


def test_an_altered_period_breaks_the_chain(tmp_path: Path) -> None:
    store = _published(tmp_path)
    e = entries(store)[2]
    body = json.loads(e.body)
    body["adults"]["life_better_6m"]["share_better"] = 0.99  # burying a bad week
    with store.write() as cur:
        cur.execute("UPDATE transparency_log SET body = ? WHERE seq = 3", [canonical(body)])
    result = verify(entries(store), period_days=7, now=NOW)
    assert not result.ok
    assert any("seq 3" in p and "altered" in p for p in result.problems), result.problems
    # Rehashing the altered entry breaks the link from the one after it instead.
    publish_due(store, SETTINGS, now=NOW + WEEK)
    e3 = entries(store)[2]
    with store.write() as cur:
        cur.execute(
            "UPDATE transparency_log SET hash = ? WHERE seq = 3",
            [entry_hash(e3.prev_hash, 3, e3.period_start, e3.period_end, e3.body)],
        )
    result = verify(entries(store), period_days=7, now=NOW + WEEK)
    assert any("seq 4" in p and "does not link" in p for p in result.problems), result.problems
    store.close()


def test_a_removed_or_withheld_period_shows(tmp_path: Path) -> None:
    store = _published(tmp_path)
    with store.write() as cur:
        cur.execute("DELETE FROM transparency_log WHERE seq = 2")
    problems = verify(entries(store), period_days=7, now=NOW).problems
    assert any("removed" in p for p in problems) and any("gap" in p for p in problems)
    store.close()
    store = _published(tmp_path / "b")
    with store.write() as cur:
        cur.execute("DELETE FROM transparency_log WHERE seq = 3")  # the newest, quietly
    problems = verify(entries(store), period_days=7, now=NOW).problems
    assert any("due but not published" in p for p in problems), problems
    store.close()


def test_a_consistent_rewrite_is_caught_by_a_kept_copy(tmp_path: Path) -> None:
    store = _published(tmp_path)
    kept = {e.seq: e.hash for e in entries(store)}
    # Rewrite every entry from seq 2 on, rehashing the whole chain after it.
    rows = entries(store)
    prev = rows[0].hash
    with store.write() as cur:
        for e in rows[1:]:
            body = json.loads(e.body)
            body["note"] = "rewritten"
            text = canonical(body)
            digest = entry_hash(prev, e.seq, e.period_start, e.period_end, text)
            cur.execute(
                "UPDATE transparency_log SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                [text, prev, digest, e.seq],
            )
            prev = digest
    assert verify(entries(store), period_days=7, now=NOW).ok  # internally consistent
    result = verify(entries(store), period_days=7, now=NOW, anchors={3: kept[3]})
    assert not result.ok and "seq 3" in result.problems[0]
    store.close()


def test_public_route_page_and_cli_verify(client: Any, tmp_path: Path) -> None:
    from api.cli import app as cli
    from pipelines.serving.jobs import JobContext, run_job

    eng = client.app.state.engine
    report = run_job("transparency", JobContext(eng))
    assert report.ok, report.message
    assert report.counts["published"] == eng.settings.wellbeing.transparency.backfill_periods
    r = client.get("/v1/transparency")  # public: no key
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verification"]["ok"] and len(body["entries"]) == report.counts["published"]
    assert body["verification"]["head"] == body["entries"][-1]["hash"]
    page = client.get("/transparency")
    assert page.status_code == 200 and "Chain verified" in page.text
    # A saved copy verifies; the same copy with one figure changed does not (exit code 1).
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(body))
    head = f"{len(body['entries'])}:{body['verification']['head']}"
    runner = CliRunner()
    ok = runner.invoke(cli, ["transparency", "verify", "--file", str(saved), "--expect", head])
    assert ok.exit_code == 0, ok.output
    body["entries"][0]["body"] = body["entries"][0]["body"].replace('"format":1', '"format":2')
    saved.write_text(json.dumps(body))
    bad = runner.invoke(cli, ["transparency", "verify", "--file", str(saved)])
    assert bad.exit_code == 1 and "altered" in bad.stdout
    wrong = runner.invoke(cli, ["transparency", "verify", "--file", str(saved), "--expect", "x"])
    assert wrong.exit_code != 0 and "SEQ:HASH" in wrong.output
