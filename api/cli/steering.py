"""Steering commands: ``steerfeed eval steering`` (the MicroLens steering benchmark)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.core import _fail, eval_app

DEFAULT_PROMPTS = (
    Path(__file__).resolve().parents[2] / "pipelines" / "offline" / "data" / "steering_prompts.json"
)


@eval_app.command("steering")
def eval_steering(
    data: Annotated[
        Path, typer.Option("--data", help="MicroLens folder (holds microlens_items.parquet)")
    ] = Path("../shared/data/microlens"),
    prompts: Annotated[
        Path, typer.Option("--prompts", help="JSON list of {'prompt': ...} (labels optional)")
    ] = DEFAULT_PROMPTS,
    out: Annotated[
        Path, typer.Option("--out", help="Parquet file: prompt, user_id, item_id, rank")
    ] = Path("steering_pages.parquet"),
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", help="folder of the evaluation store and the caption-vector cache"
        ),
    ] = Path("data/steering_eval"),
    limit: Annotated[
        int | None,
        typer.Option(min=100, help="random sample of this many clips (quick iterations)"),
    ] = None,
    score_only: Annotated[
        bool,
        typer.Option("--score", help="only score the pages already in --out (and its baseline)"),
    ] = False,
    split: Annotated[
        str,
        typer.Option(
            help="tune: tuning prompts x tuning users (choose settings here); heldout: held-out "
            "prompts x held-out users (run once, at the end)"
        ),
    ] = "tune",
    users: Annotated[int, typer.Option(min=20, help="test users (tuning and held-out)")] = 64,
    tune_users: Annotated[
        int, typer.Option(min=1, help="the first this many users are the tuning users")
    ] = 16,
    history: Annotated[int, typer.Option(min=20, help="clips in each user's history")] = 30,
    seed: Annotated[int, typer.Option(help="random seed of the users' histories")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Serve each test user's next page with each prompt as a session mood (and without one),
    write the pages as Parquet and report the latency a mood adds; prompts labelled with
    ``categories``/``avoid`` are scored (compliance@10, negation removal)."""
    from pipelines.offline.eval_steering import (
        SPLITS,
        SteeringEvalError,
        WorldConfig,
        rescore,
        run_steering_eval,
    )

    if split not in SPLITS:
        _fail(f"unknown --split {split!r}; valid: {', '.join(SPLITS)}")
        return
    cfg = WorldConfig(
        n_users=users, n_tune_users=tune_users, history_len=history, seed=seed, limit_clips=limit
    )
    try:
        if score_only:
            report = rescore(data, prompts, out)
        else:
            report = run_steering_eval(
                data,
                prompts,
                out,
                data_dir=data_dir,
                cfg=cfg,
                split="heldout" if split == "heldout" else "tune",
                progress=not as_json,
            )
    except SteeringEvalError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    lat = report.get("latency")
    if lat:
        typer.echo(
            f"users={report['users']} prompts={report['prompts']} pages -> {report['out']}\n"
            f"mood adds p50={lat['added_ms_p50']} ms p99={lat['added_ms_p99']} ms "
            f"(pages p99: {lat['no_mood_ms_p99']} -> {lat['mood_ms_p99']} ms)"
        )
    for key, label in (("scores", "steering"), ("baseline_scores", "baseline")):
        scores = report.get(key)
        if scores:
            typer.echo(
                f"{label}: compliance@10 tune={scores['compliance_at_10']['tune']} "
                f"heldout={scores['compliance_at_10']['heldout']}; negation removed "
                f"tune={scores['negation_removed']['tune']} "
                f"heldout={scores['negation_removed']['heldout']}"
            )
