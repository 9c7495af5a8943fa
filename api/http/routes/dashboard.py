"""The analysts' dashboard: one server-rendered HTML page (inline SVG plots, no JavaScript, no
external resources) and the JSON endpoints it is made from.

- ``GET /dashboard``: experiments (arms, metrics with intervals, SRM, guardrail verdicts, the
  latest simulation's daily series), satisfaction over time and governor figures.
  Authenticated by ``Authorization: Bearer <key>`` or by the ``steerfeed_key`` cookie that
  ``POST /dashboard/login`` sets from a form; without either it shows the login form.
- ``GET /v1/dashboard/experiments``, ``/v1/dashboard/satisfaction``,
  ``/v1/dashboard/governor``: the same data as JSON.

Roles: ``analyst`` and ``admin``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.auth import Principal
from api.http.deps import EngineDep, PrincipalDep
from api.http.errors import ERROR_MEANINGS
from api.http.signin import (
    escape,
    html_page,
    page_principal,
    read_login_key,
    refused,
    sign_in_page,
)
from pipelines.serving.engine import Engine

router = APIRouter(tags=["dashboard"])

COOKIE = "steerfeed_key"
ROLES = ("analyst", "admin")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


# -- data -------------------------------------------------------------------------------------
def experiments_data(engine: Engine) -> list[dict[str, Any]]:
    """Every stored experiment with its newest analysis and simulation report."""
    repo = engine.experiments
    out = []
    for exp in repo.list_all():
        out.append(
            {
                "definition": exp,
                "analysis": repo.latest_result(exp["name"], "analysis"),
                "simulation": repo.latest_result(exp["name"], "simulation"),
            }
        )
    return out


def satisfaction_data(engine: Engine) -> list[dict[str, Any]]:
    """Daily in-the-moment survey answers: count and mean (1-5)."""
    df = engine.store.query(
        "SELECT CAST(shown_at AS DATE) AS day, count(*) AS answers, avg(answer) AS mean_answer "
        "FROM survey_prompts WHERE status = 'answered' AND kind = 'in_moment' "
        "GROUP BY 1 ORDER BY day"
    )
    return [
        {"day": _jsonable(r["day"]), "answers": int(r["answers"]), "mean": float(r["mean_answer"])}
        for r in df.iter_rows(named=True)
    ]


def governor_data(engine: Engine) -> dict[str, Any]:
    """Governor figures: who has limits, survey response, and per-arm figures of simulations."""
    settings = engine.store.query(
        "SELECT set_by, count(*) AS users FROM governor_settings GROUP BY 1 ORDER BY set_by"
    )
    teens = engine.store.scalar("SELECT count(*) FROM users WHERE is_teen")
    prompts = engine.store.query(
        "SELECT status, count(*) AS n FROM survey_prompts GROUP BY 1 ORDER BY status"
    )
    sims = []
    for item in experiments_data(engine):
        sim = item["simulation"]
        if sim and sim.get("governor"):
            sims.append({"experiment": item["definition"]["name"], "per_arm": sim["governor"]})
    return {
        "limits_set_by": {
            str(r["set_by"]): int(r["users"]) for r in settings.iter_rows(named=True)
        },
        "teen_users_default_limits": int(teens or 0),
        "survey_prompts": {str(r["status"]): int(r["n"]) for r in prompts.iter_rows(named=True)},
        "simulations": sims,
    }


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, (datetime, date)) else v


# -- JSON endpoints ---------------------------------------------------------------------------
@router.get("/v1/dashboard/experiments")
def dashboard_experiments(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Experiments with their newest analysis and simulation."""
    principal.require(*ROLES)
    return {"experiments": experiments_data(engine)}


@router.get("/v1/dashboard/satisfaction")
def dashboard_satisfaction(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Satisfaction over time (daily in-the-moment answers)."""
    principal.require(*ROLES)
    return {"days": satisfaction_data(engine)}


@router.get("/v1/dashboard/governor")
def dashboard_governor(engine: EngineDep, principal: PrincipalDep) -> dict[str, Any]:
    """Governor figures."""
    principal.require(*ROLES)
    return governor_data(engine)


# -- HTML -------------------------------------------------------------------------------------
def _page_principal(
    request: Request, engine: Engine, authorization: str | None, cookie: str | None
) -> Principal:
    return page_principal(request, engine, authorization, cookie, roles=ROLES)


def _login_error(exc: HTTPException) -> HTMLResponse:
    return refused(exc, _login_page)


# Tagged public: the app-wide key check is skipped; the page authenticates itself (header or
# cookie) and shows the sign-in form otherwise.
@router.get(
    "/dashboard",
    response_class=HTMLResponse,
    tags=["public"],
    responses={
        code: {"description": f"the sign-in form (HTML): {ERROR_MEANINGS[code]}"}
        for code in (401, 403, 429)
    },
)
def dashboard_page(
    request: Request,
    engine: EngineDep,
    authorization: Annotated[str | None, Header(max_length=4096)] = None,
    steerfeed_key: Annotated[str | None, Cookie(max_length=256)] = None,
) -> HTMLResponse:
    """The dashboard page (or the login form when no valid key comes with the request)."""
    if not authorization and not steerfeed_key:
        return HTMLResponse(_login_page(None))  # a page to sign in on, not an error
    try:
        _page_principal(request, engine, authorization, steerfeed_key)
    except HTTPException as exc:
        return _login_error(exc)
    return HTMLResponse(render_dashboard(engine))


@router.post(
    "/dashboard/login",
    tags=["public"],
    responses={
        303: {"description": "signed in: the key is set as a cookie; on to /dashboard"},
        **{
            code: {"description": f"the sign-in form (HTML): {ERROR_MEANINGS[code]}"}
            for code in (401, 403, 413, 422, 429)
        },
    },
)
async def dashboard_login(request: Request, engine: EngineDep) -> Response:
    """Check an API key sent from the login form; set it as an HttpOnly cookie. Failed
    attempts count against the caller's address (429 with ``Retry-After`` when over)."""
    key, problem = await read_login_key(request)
    if problem is not None:
        return HTMLResponse(_login_page(problem.message), status_code=problem.status)
    try:
        await run_in_threadpool(_page_principal, request, engine, f"Bearer {key}", None)
    except HTTPException as exc:
        return _login_error(exc)
    resp = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
    resp.set_cookie(COOKIE, key, httponly=True, samesite="strict", max_age=8 * 3600)
    return resp


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}
.badge{display:inline-block;padding:1px 8px;border-radius:8px;font-size:12px;color:#fff}
.pass{background:#2ca02c}.fail{background:#d62728}.inconclusive{background:#888}
.alarm{background:#d62728}.ok{background:#2ca02c}.sig{font-weight:bold}
.muted{color:#777;font-size:12px}svg{background:#fff;margin:4px 12px 4px 0}
.row{display:flex;flex-wrap:wrap}
"""


_e = escape


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}g}"


def _page(title: str, body: str) -> str:
    return html_page(title, body, css=_CSS)


def _login_page(error: str | None) -> str:
    return sign_in_page(
        "steerfeed dashboard: sign in",
        "<h1>steerfeed dashboard</h1><p>Sign in with an analyst or admin API key "
        "(<code>steerfeed keys create --role analyst</code>).</p>",
        "/dashboard/login",
        error,
        css=_CSS,
        error_class="fail badge",
    )


def line_chart(
    series: dict[str, list[tuple[str, float | None]]],
    *,
    title: str,
    width: int = 420,
    height: int = 220,
) -> str:
    """An inline SVG line chart: one line per series over shared x labels."""
    labels: list[str] = []
    for points in series.values():
        for x, _ in points:
            if x not in labels:
                labels.append(x)
    values = [y for pts in series.values() for _, y in pts if y is not None]
    left, right, top, bottom = 48, 12, 24, 36
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='{_e(title)}'>",
        f"<text x='{left}' y='14' font-size='12' font-weight='bold'>{_e(title)}</text>",
    ]
    if not values or not labels:
        parts.append(f"<text x='{left}' y='{top + ph / 2}' font-size='12'>no data</text></svg>")
        return "".join(parts)
    lo, hi = float(min(values)), float(max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def sx(i: int) -> float:
        return left + (pw * i / max(1, len(labels) - 1) if len(labels) > 1 else pw / 2)

    def sy(v: float) -> float:
        return top + ph * (1.0 - (v - lo) / (hi - lo))

    parts.append(
        f"<line x1='{left}' y1='{top + ph}' x2='{left + pw}' y2='{top + ph}' stroke='#999'/>"
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + ph}' stroke='#999'/>"
    )
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = sy(v)
        parts.append(
            f"<line x1='{left}' y1='{y:.1f}' x2='{left + pw}' y2='{y:.1f}' stroke='#eee'/>"
            f"<text x='{left - 4}' y='{y + 4:.1f}' font-size='10' text-anchor='end'>"
            f"{_e(_num(v, 3))}</text>"
        )
    step = max(1, math.ceil(len(labels) / 8))
    for i, lab in enumerate(labels):
        if i % step == 0:
            parts.append(
                f"<text x='{sx(i):.1f}' y='{top + ph + 14}' font-size='10' "
                f"text-anchor='middle'>{_e(lab)}</text>"
            )
    for n, (name, points) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        xy = [(sx(labels.index(lab)), sy(v)) for lab, v in points if v is not None]
        if len(xy) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
            parts.append(
                f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{path}'/>"
            )
        for px, py in xy:
            parts.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3' fill='{color}'/>")
        ly = top + ph + 28
        lx = left + 110 * n
        parts.append(
            f"<rect x='{lx}' y='{ly - 8}' width='10' height='10' fill='{color}'/>"
            f"<text x='{lx + 14}' y='{ly + 1}' font-size='11'>{_e(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def forest_plot(
    rows: Sequence[tuple[str, float, float, float]], *, title: str, width: int = 460
) -> str:
    """An inline SVG forest plot: one row per metric, point and interval, zero line."""
    height = 40 + 22 * max(1, len(rows))
    left, right = 150, 16
    pw = width - left - right
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='{_e(title)}'>",
        f"<text x='8' y='14' font-size='12' font-weight='bold'>{_e(title)}</text>",
    ]
    if not any(math.isfinite(v) for r in rows for v in r[1:]):
        parts.append("<text x='8' y='34' font-size='12'>no estimates</text></svg>")
        return "".join(parts)
    # Scale to the widest row but one, so a single extreme metric does not flatten the rest
    # (its interval is clipped at the edge, its numbers are in the table).
    widths = sorted(
        max(abs(v) for v in r[1:] if math.isfinite(v))
        for r in rows
        if any(math.isfinite(v) for v in r[1:])
    )
    top = widths[-2] if len(widths) >= 3 else widths[-1]
    span = max(top, 1e-9) * 1.1

    def sx(v: float) -> float:
        return left + pw * (min(max(v, -span), span) + span) / (2 * span)

    parts.append(
        f"<line x1='{sx(0):.1f}' y1='22' x2='{sx(0):.1f}' y2='{height - 14}' "
        "stroke='#999' stroke-dasharray='3,3'/>"
        f"<text x='{sx(-span):.1f}' y='{height - 2}' font-size='10'>{_e(_num(-span, 2))}</text>"
        f"<text x='{sx(span):.1f}' y='{height - 2}' font-size='10' text-anchor='end'>"
        f"{_e(_num(span, 2))}</text>"
    )
    for i, (label, point, lo, hi) in enumerate(rows):
        y = 34 + 22 * i
        sig = lo > 0 or hi < 0
        color = "#d62728" if sig else "#1f77b4"
        parts.append(
            f"<text x='{left - 6}' y='{y + 4}' font-size='11' text-anchor='end'>{_e(label)}</text>"
        )
        if math.isfinite(lo) and math.isfinite(hi):
            parts.append(
                f"<line x1='{sx(lo):.1f}' y1='{y}' x2='{sx(hi):.1f}' y2='{y}' "
                f"stroke='{color}' stroke-width='2'/>"
            )
        if math.isfinite(point):
            parts.append(f"<circle cx='{sx(point):.1f}' cy='{y}' r='4' fill='{color}'/>")
    parts.append("</svg>")
    return "".join(parts)


def _rel(m: dict[str, Any], key: str) -> float:
    base = m.get("mean_a")
    v = m.get(key)
    if v is None or base is None or not base:
        return math.nan
    return float(v) / abs(float(base))


def _comparison_html(comp: dict[str, Any]) -> str:
    rows = []
    forest: list[tuple[str, float, float, float]] = []
    for name, m in comp["metrics"].items():
        if "error" in m or m.get("diff") is None:
            reason = m.get("error", "no estimate")
            rows.append(
                f"<tr><td class='l'>{_e(name)}</td><td colspan='7' class='l muted'>"
                f"{_e(reason)}</td></tr>"
            )
            continue
        sig = (m.get("ci_low") or 0) > 0 or (m.get("ci_high") or 0) < 0
        cuped = m.get("cuped")
        cuped_txt = (
            f"{_num(cuped['diff'])} [{_num(cuped['ci_low'])}, {_num(cuped['ci_high'])}]"
            f" <span class='muted'>var −{_num(100 * (cuped.get('variance_reduction') or 0), 3)}%"
            "</span>"
            if cuped and cuped.get("diff") is not None
            else "–"
        )
        rows.append(
            f"<tr{' class=sig' if sig else ''} data-metric='{_e(name)}'>"
            f"<td class='l' title='{_e(m.get('label', ''))}'>{_e(name)}</td>"
            f"<td>{_num(m.get('mean_a'))}</td><td>{_num(m.get('mean_b'))}</td>"
            f"<td>{_num(m.get('diff'))}</td>"
            f"<td>[{_num(m.get('ci_low'))}, {_num(m.get('ci_high'))}]</td>"
            f"<td>{_num(m.get('p_value'), 3)}</td><td>{cuped_txt}</td>"
            f"<td>{_num(m.get('n_a'))} / {_num(m.get('n_b'))}</td></tr>"
        )
        forest.append((name, _rel(m, "diff"), _rel(m, "ci_low"), _rel(m, "ci_high")))
    g = comp.get("guardrails") or {}
    verdict = str(g.get("status", "inconclusive"))
    reasons = "".join(f"<li>{_e(r)}</li>" for r in g.get("reasons", []))
    ms = comp.get("msprt")
    msprt_txt = (
        f"<p class='muted'>Sequential test (mSPRT, watch minutes, {ms['looks']} looks): "
        f"always-valid p = {_num(ms['p_values'][-1], 3)}, "
        f"{'rejected' if ms['rejected'] else 'not rejected'}.</p>"
        if ms
        else ""
    )
    return (
        f"<h3>{_e(comp['arm'])} vs {_e(comp['control'])}</h3>"
        "<table><tr><th class='l'>metric</th><th>control</th><th>treatment</th><th>diff</th>"
        "<th>95% CI</th><th>p</th><th>CUPED diff [CI]</th><th>users</th></tr>"
        + "".join(rows)
        + "</table>"
        + forest_plot(forest, title="relative difference vs control, with 95% CI")
        + f"<p>Guardrails: <span class='badge {_e(verdict)}' data-verdict='{_e(verdict)}'>"
        f"{_e(verdict)}</span></p><ul class='muted'>{reasons}</ul>{msprt_txt}"
    )


def _simulation_html(sim: dict[str, Any]) -> str:
    daily = sim.get("daily") or []
    arms = list(dict.fromkeys(d["arm"] for d in daily))
    charts = []
    for key, title in (
        ("wellbeing", "hidden wellbeing (mean, 0-1)"),
        ("true_satisfaction", "true session satisfaction (1-5)"),
        ("survey_mean", "in-the-moment survey answer (1-5)"),
        ("minutes_per_user", "watch minutes per user per day"),
        ("sessions_per_user", "sessions per user per day"),
        ("stop_cards", "governor stop cards per day"),
    ):
        series = {a: [(str(d["day"]), d.get(key)) for d in daily if d["arm"] == a] for a in arms}
        charts.append(line_chart(series, title=title))
    cfg = sim.get("config", {})
    return (
        f"<h3>Simulation ({_e(cfg.get('days'))} days, {_e(sim.get('simulated_users'))} users, "
        f"{_e(sim.get('pages'))} pages)</h3><div class='row'>" + "".join(charts) + "</div>"
    )


def _experiment_html(item: dict[str, Any]) -> str:
    d = item["definition"]
    arms_rows = "".join(
        f"<tr><td class='l'>{_e(a['name'])}</td><td>{_num(a.get('weight'))}</td>"
        f"<td class='l'><code>{_e(json.dumps(a.get('overrides') or {}))}</code></td></tr>"
        for a in d["arms"]
    )
    out = [
        f"<section class='experiment' data-experiment='{_e(d['name'])}'>"
        f"<h2>{_e(d['name'])} <span class='muted'>{_e(d['status'])}, allocation "
        f"{_num(d['allocation'])}, holdback {_num(d['holdback'])}</span></h2>"
        "<table><tr><th class='l'>arm</th><th>weight</th><th class='l'>overrides</th></tr>"
        f"{arms_rows}</table>"
    ]
    analysis = item.get("analysis")
    if analysis:
        users = "".join(
            f"<tr><td class='l'>{_e(a['name'])}</td><td class='users'>{_num(a['users'])}</td>"
            f"<td>{_num(a['expected_share'], 3)}</td></tr>"
            for a in analysis["arms"]
        )
        srm = analysis.get("srm")
        srm_txt = (
            f"SRM check: χ² = {_num(srm['chi2'], 3)}, p = {_num(srm['p_value'], 3)} "
            f"<span class='badge {'alarm' if srm['alarm'] else 'ok'}' data-srm="
            f"'{'alarm' if srm['alarm'] else 'ok'}'>{'ALARM' if srm['alarm'] else 'ok'}</span>"
            if srm
            else "SRM check: not enough users"
        )
        out.append(
            f"<p class='muted'>analysis of {_e(analysis.get('computed_at', ''))}: "
            f"{_num(analysis['exposed_users'])} exposed users, "
            f"{_num(analysis['holdback']['users'])} in the holdback</p>"
            "<table><tr><th class='l'>arm</th><th>users</th><th>expected share</th></tr>"
            f"{users}</table><p>{srm_txt}</p>"
        )
    sim = item.get("simulation")
    comps = (sim or {}).get("comparisons") or (analysis or {}).get("comparisons") or []
    for comp in comps:
        out.append(_comparison_html(comp))
    if sim:
        out.append(_simulation_html(sim))
    if not analysis and not sim:
        out.append(
            "<p class='muted'>No analysis yet: run <code>steerfeed experiments analyze "
            f"{_e(d['name'])}</code>.</p>"
        )
    out.append("</section>")
    return "".join(out)


def render_dashboard(engine: Engine) -> str:
    """The whole dashboard page as HTML."""
    exps = experiments_data(engine)
    sat = satisfaction_data(engine)
    gov = governor_data(engine)
    sat_rows = "".join(
        f"<tr><td class='l'>{_e(d['day'])}</td><td>{d['answers']}</td>"
        f"<td class='sat-mean'>{d['mean']:.2f}</td></tr>"
        for d in sat
    )
    sat_chart = line_chart(
        {"mean answer": [(str(d["day"])[5:], d["mean"]) for d in sat]},
        title="in-the-moment satisfaction per day (1-5)",
        width=560,
    )
    gov_rows = "".join(
        f"<tr><td class='l'>{_e(s['experiment'])}</td><td class='l'>{_e(arm)}</td>"
        f"<td>{v['pages']}</td><td>{v['tapered_pages']}</td><td>{v['stop_cards']}</td></tr>"
        for s in gov["simulations"]
        for arm, v in s["per_arm"].items()
    )
    limits = ", ".join(f"{k}: {v}" for k, v in gov["limits_set_by"].items()) or "none"
    prompts = ", ".join(f"{k}: {v}" for k, v in gov["survey_prompts"].items()) or "none"
    body = [
        "<h1>steerfeed dashboard</h1>",
        f"<p class='muted'>{len(exps)} experiments · JSON at /v1/dashboard/experiments, "
        "/v1/dashboard/satisfaction, /v1/dashboard/governor</p>",
        "<h2 id='experiments'>Experiments</h2>",
    ]
    body += [_experiment_html(e) for e in exps] or ["<p>No experiments stored.</p>"]
    body += [
        "<h2 id='satisfaction'>Satisfaction over time</h2>",
        sat_chart,
        "<table><tr><th class='l'>day</th><th>answers</th><th>mean (1-5)</th></tr>"
        f"{sat_rows}</table>"
        if sat
        else "<p>No survey answers yet.</p>",
        "<h2 id='governor'>Governor</h2>",
        f"<p>Time limits set by: {_e(limits)}; teen accounts with default limits: "
        f"<span id='teens'>{gov['teen_users_default_limits']}</span>. "
        f"Survey cards: {_e(prompts)}.</p>",
        "<table><tr><th class='l'>experiment</th><th class='l'>arm</th><th>pages</th>"
        f"<th>tapered pages</th><th>stop cards</th></tr>{gov_rows}</table>"
        if gov_rows
        else "<p class='muted'>No simulated governor figures yet.</p>",
    ]
    return _page("steerfeed dashboard", "".join(body))
