"""``steerfeed models list|promote|rollback`` and ``steerfeed eval demo`` (learned ranker).

Imported by :mod:`api.cli`, which registers the commands on its Typer apps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.cli.core import DEFAULT_DATA, DataDir, _engine, _fail, app, eval_app

models_app = typer.Typer(
    help="Learned ranker models: list, promote, roll back.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


def _registry(data_dir: Path) -> Any:
    from ranking.learned.registry import ModelRegistry
    from ranking.learned.services import models_dir

    if not data_dir.exists():
        _fail(f"no such data directory: {data_dir}")
    return ModelRegistry(models_dir(data_dir))


@models_app.command("list")
def models_list(
    data_dir: DataDir = DEFAULT_DATA,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List stored models, their held-out metrics and which one serves."""
    from ranking.learned.registry import HAND_WEIGHTED
    from ranking.learned.value_model import LearnedModelError

    reg = _registry(data_dir)
    try:
        records = reg.records()
        serving = reg.serving_version()
        history = reg.history()
    except LearnedModelError as exc:
        _fail(str(exc))
        return
    rows = [
        {
            "version": r.version,
            "serving": r.serving,
            "created_at": r.created_at,
            "n_train": r.n_train,
            "holdout_start": r.holdout_start,
            "ndcg@10": r.metrics.get("ndcg@10"),
            "hand_weighted_ndcg@10": r.metrics.get("hand_weighted_ndcg@10"),
            "gate": r.meta.get("gate"),
            "features": len(r.feature_names),
        }
        for r in records
    ]
    if as_json:
        typer.echo(
            json.dumps({"serving": serving, "history": history, "models": rows}, default=str)
        )
        return
    typer.echo(f"serving: {serving or HAND_WEIGHTED}")
    if not rows:
        typer.echo("no models stored; train one with 'steerfeed jobs run train'")
        return

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{float(v):.4f}"

    typer.echo(f"  {'version':<26} {'created':<20} {'n_train':>9} {'ndcg@10':>8} {'hand':>8}  gate")
    for r in rows:
        gate = r["gate"] or {}
        verdict = "-" if not gate else ("passed" if gate.get("passed") else "refused")
        mark = "*" if r["serving"] else " "
        typer.echo(
            f"{mark} {r['version']:<26} {r['created_at'][:19]:<20} {r['n_train']:>9} "
            f"{fmt(r['ndcg@10']):>8} {fmt(r['hand_weighted_ndcg@10']):>8}  {verdict}"
        )


class PromoteInput(BaseModel):
    """Validated input of ``models promote``."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=2, pattern=r"^v[0-9A-Za-z_-]+$")
    min_gain: float = Field(ge=0.0)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="model version (see 'steerfeed models list')")],
    data_dir: DataDir = DEFAULT_DATA,
    min_gain: Annotated[float, typer.Option(help="NDCG@10 margin the model must win by")] = 0.0,
) -> None:
    """Promote a stored model if it beats the serving one on its held-out later window.

    The window is every request from the model's ``holdout_start`` on (after everything it was
    trained on); both models are scored on the features logged at those impressions.
    """
    from datetime import datetime

    from pipelines.serving.jobs.train import examples_from_store
    from ranking.learned.registry import PromotionRefused, promotion_gate
    from ranking.learned.training import TrainingError, TrainSettings
    from ranking.learned.value_model import LearnedModelError

    try:
        args = PromoteInput(version=version, min_gain=min_gain)
    except ValidationError as exc:
        _fail(f"invalid input: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        return
    reg = _registry(data_dir)
    try:
        candidate = reg.load(args.version)
    except LearnedModelError as exc:
        _fail(str(exc))
        return
    start = candidate.meta.get("holdout_start")
    if not start:
        _fail(f"model {args.version} records no held-out window; retrain it")
        return
    eng = _engine(data_dir)
    try:
        examples, _ = examples_from_store(eng, TrainSettings(since_days=None))
        import polars as pl

        holdout = examples.subset(pl.col("req_ts") >= datetime.fromisoformat(str(start)))
        if holdout.n == 0:
            _fail(f"no logged requests since {start} to compare on")
            return
        gate = promotion_gate(candidate, eng.learned.serving(), holdout, min_gain=args.min_gain)
        try:
            reg.promote(args.version, gate)
        except PromotionRefused as exc:
            typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(1) from None
    except (LearnedModelError, TrainingError) as exc:
        _fail(str(exc))
    finally:
        eng.close()
    typer.echo(json.dumps({"promoted": args.version, "gate": gate.as_dict()}))


@models_app.command("rollback")
def models_rollback(data_dir: DataDir = DEFAULT_DATA) -> None:
    """Serve the previously promoted model again (the hand-weighted scorer if none)."""
    from ranking.learned.registry import HAND_WEIGHTED
    from ranking.learned.value_model import LearnedModelError

    reg = _registry(data_dir)
    try:
        current = reg.serving_version()
        previous = reg.rollback()
    except LearnedModelError as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps({"rolled_back": current, "serving": previous or HAND_WEIGHTED}))


class DemoEvalInput(BaseModel):
    """Validated input of ``eval demo``."""

    model_config = ConfigDict(extra="forbid")

    users: int = Field(ge=20, le=200_000)
    clips: int = Field(ge=50, le=2_000_000)
    events: int = Field(ge=1000, le=50_000_000)
    days: int = Field(ge=4, le=365)
    holdout_days: float = Field(gt=0)
    seed: int
    embed: bool


@eval_app.command("demo")
def eval_demo(
    users: Annotated[int, typer.Option(help="users in the world")] = 600,
    clips: Annotated[int, typer.Option(help="clips in the world")] = 5000,
    events: Annotated[int, typer.Option(help="logged events")] = 150_000,
    days: Annotated[int, typer.Option(help="days of log")] = 14,
    holdout_days: Annotated[float, typer.Option(help="last days held out for evaluation")] = 3.0,
    seed: Annotated[int, typer.Option(help="world seed")] = 0,
    embed: Annotated[
        bool, typer.Option("--embed/--no-embed", help="embed captions (user x clip cosine)")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="also write the JSON here")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Learned ranker vs hand-weighted scorer on a fresh demo world (NDCG@10, held-out days).

    The world is generated in memory (DATA_DIR is not touched); the result is printed as JSON.
    """
    from pipelines.offline.learned_demo_eval import DemoEvalConfig, run_demo_eval

    try:
        a = DemoEvalInput(
            users=users,
            clips=clips,
            events=events,
            days=days,
            holdout_days=holdout_days,
            seed=seed,
            embed=embed,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        _fail(f"invalid --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}")
        return
    if a.holdout_days >= a.days:
        _fail(f"--holdout-days ({a.holdout_days}) must be smaller than --days ({a.days})")
    result = run_demo_eval(
        DemoEvalConfig(
            n_users=a.users,
            n_clips=a.clips,
            n_events=a.events,
            days=a.days,
            holdout_days=a.holdout_days,
            seed=a.seed,
            embed=a.embed,
        )
    )
    text = json.dumps(result, indent=2, default=str)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    typer.echo(text)
