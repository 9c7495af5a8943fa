"""The public transparency report: ``GET /v1/transparency`` (JSON) and ``/transparency`` (a page).

Public (no key): aggregate satisfaction over time, every published period with its hash, and
whether the chain verifies now. Anyone can keep a copy and check a later one against it with
``steerfeed transparency verify --file report.json --expect SEQ:HASH``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from api.http.auth import PUBLIC_TAG
from api.http.deps import EngineDep
from api.http.signin import escape, html_page
from pipelines.serving.engine import Engine
from wellbeing.transparency import GROUPS, entries, verify

router = APIRouter(tags=["transparency", PUBLIC_TAG])

_CSS = (
    "body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .6em;"
    "text-align:right}.sup{color:#888}.ok{color:#2a7a3b}.bad{color:#b00020;font-weight:bold}"
    ".h{font-family:monospace}"
)


class TransparencyEntryOut(BaseModel):
    """One published period."""

    seq: int
    period_start: str
    period_end: str
    published_at: str
    figures: dict[str, Any] = Field(description="the period's aggregates, per group")
    body: str = Field(description="the exact text the hash covers (canonical JSON)")
    prev_hash: str
    hash: str


class VerificationOut(BaseModel):
    """Whether the chain verifies now."""

    ok: bool
    entries: int
    head: str = Field(description="the newest entry's hash: keep it to check later copies")
    problems: list[str]


class TransparencyOut(BaseModel):
    """The whole report."""

    period_days: int
    min_cohort: int
    groups: list[str]
    entries: list[TransparencyEntryOut]
    verification: VerificationOut


def _report(engine: Engine) -> dict[str, Any]:
    settings = engine.settings.wellbeing.transparency
    rows = entries(engine.store)
    check = verify(rows, period_days=settings.period_days, now=datetime.now(UTC))
    return {
        "period_days": settings.period_days,
        "min_cohort": settings.min_cohort,
        "groups": list(GROUPS),
        "entries": [e.as_dict() for e in rows],
        "verification": check.as_dict(),
    }


@router.get("/v1/transparency", response_model=TransparencyOut)
def transparency_report(engine: EngineDep) -> dict[str, Any]:
    """Aggregate satisfaction over time, as published (public; groups smaller than
    ``min_cohort`` people are suppressed)."""
    return _report(engine)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.0f}%"


def _cell(block: dict[str, Any], key: str, fmt: Any = _pct) -> str:
    if block.get("suppressed"):
        return '<td class="sup" title="too few people to publish">n&lt;floor</td>'
    return f"<td>{escape(fmt(block.get(key)))}</td>"


@router.get("/transparency", response_class=HTMLResponse)
def transparency_page(engine: EngineDep) -> HTMLResponse:
    """The report as a small self-contained page."""
    rep = _report(engine)
    v = rep["verification"]
    rows = []
    for e in reversed(rep["entries"]):
        f = e["figures"]
        cells = []
        for g in GROUPS:
            life, use = f[g]["life_better_6m"], f[g]["time_and_regret"]
            cells.append(_cell(life, "share_better"))
            cells.append(
                _cell(use, "minutes_per_person_per_day", lambda x: "–" if x is None else f"{x:.1f}")
            )
            cells.append(_cell(use, "regret_share_of_long_sessions"))
        rows.append(
            f'<tr data-seq="{e["seq"]}"><td>{escape(e["period_start"][:10])}</td>'
            + "".join(cells)
            + f'<td class="h">{escape(e["hash"][:12])}</td></tr>'
        )
    head = "".join(f'<th colspan="3">{g}</th>' for g in GROUPS)
    sub = "<th>life better</th><th>min/day</th><th>regret</th>" * len(GROUPS)
    status = (
        f'<p id="status" class="ok">Chain verified: {v["entries"]} periods, head '
        f"<code>{escape(v['head'])}</code></p>"
        if v["ok"]
        else '<p id="status" class="bad">Chain does NOT verify: '
        + escape("; ".join(v["problems"]))
        + "</p>"
    )
    body = f"""<h1>Transparency report</h1>
<p>Aggregate satisfaction, published every {rep["period_days"]} days into a hash-chained log
that can only be appended to. "Life better": share answering that the app made their last six
months better (weighted for who was asked and who answered). Groups with fewer than
{rep["min_cohort"]} people are not published.
JSON: <a href="/v1/transparency">/v1/transparency</a>.</p>
{status}
<table id="report"><thead><tr><th rowspan="2">period</th>{head}<th rowspan="2">hash</th></tr>
<tr>{sub}</tr></thead><tbody>{"".join(rows)}</tbody></table>"""
    return HTMLResponse(html_page("steerfeed transparency report", body, css=_CSS))
