"""Feedback commands: ``steerfeed eval feedback`` (see-less, calibration, friends' items)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.core import _fail, eval_app


@eval_app.command("feedback")
def eval_feedback(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="folder of the demo world (built there when absent)"),
    ] = Path("data/feedback_eval"),
    split: Annotated[
        str, typer.Option(help="tuning (even user ids) or held_out (odd); report held_out once")
    ] = "tuning",
    users: Annotated[
        int, typer.Option(min=5, help="users measured (longest histories first)")
    ] = 60,
    world_users: Annotated[int, typer.Option(min=20, help="users in the demo world")] = 300,
    clips: Annotated[int, typer.Option(min=200, help="clips in the demo world")] = 4000,
    events: Annotated[int, typer.Option(min=1000, help="events in the demo world")] = 60_000,
    seed: Annotated[int, typer.Option(help="seed of the demo world")] = 7,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="train a learned ranker into the world")
    ] = True,
) -> None:
    """Measure on the demo world, as JSON: the drop of a topic's share after "see less" on
    every clip of it, the pages' calibration KL against the users' interest mix and the
    collapsed users (home feed and the uncalibrated diverse top-k), friends' items share."""
    from pipelines.offline.eval_feedback import FeedbackEvalError, run_feedback_eval

    try:
        report = run_feedback_eval(
            data_dir,
            split=split,
            users=users,
            n_users=world_users,
            n_clips=clips,
            n_events=events,
            seed=seed,
            train=train,
        )
    except FeedbackEvalError as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps(report, indent=2))
