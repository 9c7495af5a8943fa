"""``steerfeed report satisfaction``: the named reports rendered as one self-contained HTML page.

Plots are drawn with matplotlib (Agg) and inlined as SVG, so the file opens anywhere with no
network. Each section has a chart first and its table, collapsed, below.
"""

from __future__ import annotations

import html
import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from storage.store import Store
from wellbeing.analytics import REPORTS, run_report

logger = logging.getLogger(__name__)

BLUE, ORANGE, GREEN, GREY, RED = "#2f6fb0", "#e08a2c", "#3a9a5b", "#8a8f98", "#c0392b"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.25,
            "figure.figsize": (6.4, 3.2),
            "svg.fonttype": "none",
        }
    )
    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _empty(msg: str) -> str:
    return f'<p class="empty">{html.escape(msg)}</p>'


def _table(df: pl.DataFrame, *, max_rows: int = 40) -> str:
    if df.height == 0:
        return _empty("no rows")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"<td>{v:.3f}</td>")
            elif isinstance(v, datetime):
                cells.append(f"<td>{v:%Y-%m-%d}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='note'>{df.height - max_rows} more rows</p>" if df.height > max_rows else ""
    return f"<div class='scroll'><table><tr>{head}</tr>{''.join(body)}</table></div>{more}"


# -- one chart per report -------------------------------------------------------------------------


def _weekly(df: pl.DataFrame) -> str:
    if df.height == 0:
        return _empty("no in-the-moment answers yet")
    plt = _plt()
    weekly = (
        df.group_by("week")
        .agg(
            ((pl.col("weighted_mean") * pl.col("answers")).sum() / pl.col("answers").sum()).alias(
                "weighted"
            ),
            ((pl.col("naive_mean") * pl.col("answers")).sum() / pl.col("answers").sum()).alias(
                "naive"
            ),
            pl.col("imputed_mean").mean().alias("imputed"),
        )
        .sort("week")
    )
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    x = weekly["week"].to_list()
    ax.plot(x, weekly["weighted"], "o-", color=BLUE, label="propensity-weighted")
    ax.plot(x, weekly["naive"], "o--", color=GREY, label="naive (who answered)")
    ax.plot(x, weekly["imputed"], "s:", color=GREEN, label="imputed, every session")
    ax.set_ylim(1, 5)
    ax.set_title("All users")
    ax.set_ylabel("mean answer (1-5)")
    ax.legend(fontsize=8, loc="lower left")
    top = (
        df.group_by("cohort").agg(pl.col("answers").sum()).sort("answers", descending=True).head(6)
    )
    for cohort in top["cohort"].to_list():
        part = df.filter(pl.col("cohort") == cohort).sort("week")
        ax2.plot(part["week"].to_list(), part["weighted_mean"], "o-", label=str(cohort))
    ax2.set_ylim(1, 5)
    ax2.set_title("By signup cohort (weighted)")
    ax2.legend(fontsize=7, title="signed up", title_fontsize=7, loc="lower left")
    for a in (ax, ax2):
        a.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _svg(fig)


def _life_better(df: pl.DataFrame) -> str:
    if df.height == 0:
        return _empty("no periodic answers yet")
    plt = _plt()
    fig, ax = plt.subplots()
    x = df["week"].to_list()
    ax.plot(x, df["weighted_share_better"] * 100, "o-", color=GREEN, label="better (weighted)")
    ax.plot(x, df["naive_share_better"] * 100, "o--", color=GREY, label="better (naive)")
    ax.plot(x, df["weighted_share_worse"] * 100, "o-", color=RED, label="worse (weighted)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of answers")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    return _svg(fig)


def _time_spent(df: pl.DataFrame) -> str:
    if df.height == 0:
        return _empty("no sessions imputed yet (run 'steerfeed jobs run satisfaction')")
    plt = _plt()
    fig, ax = plt.subplots()
    x = df["mean_minutes"].to_list()
    ax.plot(x, df["imputed_mean"], "o-", color=BLUE, label="imputed (all sessions)")
    ax.plot(x, df["observed_mean"], "s--", color=ORANGE, label="observed (asked)")
    ax.set_xlabel("mean session minutes (quintiles)")
    ax.set_ylabel("satisfaction (1-5)")
    ax.set_ylim(1, 5)
    ax.legend(fontsize=8)
    return _svg(fig)


def _regret(df: pl.DataFrame) -> str:
    if df.height == 0:
        return _empty("no sessions imputed yet")
    plt = _plt()
    fig, ax = plt.subplots()
    for teen, color, label in ((False, BLUE, "adults"), (True, ORANGE, "teens")):
        part = df.filter(pl.col("is_teen") == teen).sort("week")
        if part.height:
            ax.plot(
                part["week"].to_list(),
                part["regret_share_long"].fill_null(0.0) * 100,
                "o-",
                color=color,
                label=label,
            )
    ax.set_ylabel("% of long sessions with regret")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    return _svg(fig)


def _bars(df: pl.DataFrame, label_cols: list[str]) -> str:
    if df.height == 0:
        return _empty("no sessions imputed yet")
    plt = _plt()
    labels = [" / ".join(str(r[c]) for c in label_cols) for r in df.iter_rows(named=True)]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(labels)))
    y = list(range(len(labels)))
    ax.barh(y, df["imputed_mean"].to_list(), color=BLUE, height=0.6, label="imputed")
    obs = df["observed_mean"].to_list()
    ax.scatter(
        [o if o is not None else float("nan") for o in obs],
        y,
        color=ORANGE,
        zorder=3,
        label="observed",
    )
    ax.set_yticks(y, labels)
    ax.set_xlim(1, 5)
    ax.set_xlabel("satisfaction (1-5)")
    for i, n in enumerate(df["sessions"].to_list()):
        ax.text(1.05, i, f"n={n}", va="center", fontsize=8, color="white")
    ax.legend(fontsize=8, loc="lower right")
    return _svg(fig)


def _calibration(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return _empty("no satisfaction model yet (run 'steerfeed jobs run satisfaction')")
    held = metrics.get("heldout_calibration") or {}
    bins = held.get("bins") or []
    if not bins:
        return _empty("no held-out answers to calibrate on")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    p = [b["mean_predicted"] for b in bins]
    o = [b["mean_observed"] for b in bins]
    ax.plot([1, 5], [1, 5], color=GREY, lw=1, ls="--", label="perfect")
    ax.plot(p, o, "o-", color=BLUE, label="held-out users")
    ax.set_xlim(1, 5)
    ax.set_ylim(1, 5)
    ax.set_xlabel("predicted answer")
    ax.set_ylabel("observed answer")
    ax.legend(fontsize=8, loc="upper left")
    return _svg(fig)


def _head_comparison(ev: dict[str, Any] | None) -> str:
    if not ev:
        return _empty(
            "no evaluation found; run 'steerfeed eval wellbeing --data-dir DIR' and render the "
            "report from that DIR"
        )
    arms = ev.get("value_model_comparison", {}).get("arms", [])
    if not arms:
        return _empty("evaluation has no arms")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    w = [a["weight"] for a in arms]
    for ax, (metric, title, color) in zip(
        axes,
        (
            ("satisfaction", "true satisfaction vs weight 0", GREEN),
            ("watch_frac", "expected watch fraction vs weight 0", BLUE),
        ),
        strict=True,
    ):
        ax.errorbar(
            w,
            [a[f"{metric}_diff"] for a in arms],
            yerr=[a[f"{metric}_diff_ci95"] for a in arms],
            fmt="o-",
            color=color,
            capsize=3,
        )
        ax.axhline(0, color=GREY, lw=1)
        ax.set_xlabel("satisfaction head weight")
        ax.set_title(title, fontsize=10)
    return _svg(fig)


# -- the page ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f7f9;
color:#1f2328}
header{background:#1f3b5b;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;opacity:.8}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border-radius:8px;padding:12px 16px;min-width:150px;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card b{display:block;font-size:22px} .card span{color:#5b636e;font-size:12px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
section h2{margin:0 0 4px;font-size:17px} section p.desc{margin:0 0 10px;color:#5b636e}
svg{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px;margin-top:8px}
td,th{border-bottom:1px solid #e3e6ea;padding:3px 8px;text-align:right}
th{background:#f0f2f5} .empty{color:#8a8f98;font-style:italic} .note{color:#8a8f98}
details summary{cursor:pointer;color:#2f6fb0;margin-top:6px} .scroll{overflow-x:auto}
"""


def _headline(store: Store, metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    row = store.query(
        "SELECT count(*) AS shown, count(*) FILTER (WHERE status = 'answered') AS answered, "
        "count(*) FILTER (WHERE status IN ('dismissed', 'expired')) AS non_response, "
        "avg(answer) FILTER (WHERE status = 'answered' AND kind = 'in_moment') AS naive, "
        "sum(answer * weight) FILTER (WHERE status = 'answered' AND kind = 'in_moment') / "
        "sum(weight) FILTER (WHERE status = 'answered' AND kind = 'in_moment') AS weighted "
        "FROM wb_answers"
    ).row(0, named=True)
    sessions = store.scalar("SELECT count(*) FROM session_satisfaction") or 0
    cards = [
        (f"{row['shown']:,}", "survey cards closed"),
        (f"{row['answered']:,}", "answered"),
        (f"{row['non_response']:,}", "dismissed or expired"),
        (f"{row['naive']:.2f}" if row["naive"] is not None else "-", "naive mean answer"),
        (f"{row['weighted']:.2f}" if row["weighted"] is not None else "-", "weighted mean"),
        (f"{sessions:,}", "sessions imputed"),
    ]
    held = (metrics or {}).get("heldout_calibration") or {}
    if held.get("mae") is not None:
        cards.append((f"{held['mae']:.2f}", "model MAE, held-out"))
    return cards


#: The head comparison ``steerfeed eval wellbeing`` leaves in its data folder (shown when there).
EVALUATION_FILE = "wellbeing_eval.json"


def read_evaluation(data_dir: Path) -> dict[str, Any] | None:
    """The head comparison saved in ``data_dir`` (:data:`EVALUATION_FILE`), or ``None``."""
    path = Path(data_dir) / EVALUATION_FILE
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def render_report(store: Store, out: Path, *, evaluation: dict[str, Any] | None = None) -> Path:
    """Render every named report, the model's calibration and (when given) the head
    comparison into ``out`` (HTML with inline SVG)."""
    page = report_html(store, evaluation=evaluation)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    logger.info("satisfaction report written to %s (%d bytes)", out, len(page))
    return out


def report_html(store: Store, *, evaluation: dict[str, Any] | None = None) -> str:
    """The report of :func:`render_report` as one HTML page."""
    frames = {name: run_report(store, name) for name in REPORTS}
    latest = store.query(
        "SELECT version, metrics FROM satisfaction_models ORDER BY trained_at DESC LIMIT 1"
    )
    metrics = json.loads(latest["metrics"][0]) if latest.height else None
    version = latest["version"][0] if latest.height else "none"
    charts: dict[str, Callable[[pl.DataFrame], str]] = {
        "weekly_satisfaction_by_cohort": _weekly,
        "life_better_over_time": _life_better,
        "time_spent_vs_satisfaction": _time_spent,
        "regret_proxy": _regret,
        "by_steering_use": lambda d: _bars(d, ["steering"]),
        "by_experiment_arm": lambda d: _bars(d, ["experiment", "arm"]),
    }
    parts = [
        f"<header><h1>How people feel about their time</h1><p>steerfeed satisfaction report "
        f"&middot; generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC &middot; satisfaction model "
        f"{html.escape(str(version))}</p></header><main><div class='cards'>"
    ]
    parts += [
        f"<div class='card'><b>{v}</b><span>{k}</span></div>" for v, k in _headline(store, metrics)
    ]
    parts.append("</div>")
    for name, report in REPORTS.items():
        df = frames[name]
        parts.append(
            f"<section id='{name}'><h2>{html.escape(report.title)}</h2>"
            f"<p class='desc'>{html.escape(report.description)}</p>{charts[name](df)}"
            f"<details><summary>table ({df.height} rows) &middot; report "
            f"<code>{name}</code></summary>{_table(df)}</details></section>"
        )
    held = (metrics or {}).get("heldout_calibration") or {}
    parts.append(
        "<section id='calibration'><h2>Satisfaction model calibration</h2><p class='desc'>"
        "Mean predicted vs mean observed answer in quantile bins of the prediction, on users "
        f"held out of training. ECE {held.get('ece', '-')}, MAE {held.get('mae', '-')} "
        f"(constant baseline {held.get('mae_constant_baseline', '-')}), R² {held.get('r2', '-')}."
        f"</p>{_calibration(metrics)}</section>"
    )
    arms = (evaluation or {}).get("value_model_comparison", {}).get("arms", [])
    parts.append(
        "<section id='head'><h2>Value model with the satisfaction head vs without</h2>"
        "<p class='desc'>One page per sampled user served by the home pipeline at each head "
        "weight, scored against the demo world's ground truth; differences are paired per user "
        f"vs weight 0 (95% intervals).</p>{_head_comparison(evaluation)}"
        + (_table(pl.DataFrame(arms)) if arms else "")
        + "</section></main>"
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>steerfeed satisfaction report"
        f"</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    return page
