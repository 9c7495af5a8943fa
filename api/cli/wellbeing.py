"""Wellbeing commands: ``steerfeed report satisfaction``, ``steerfeed eval wellbeing``,
``steerfeed eval longterm`` and ``steerfeed wellbeing ...`` (links and time limits from the
command line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.core import (
    DEFAULT_DATA,
    DataDir,
    _call,
    _engine,
    _fail,
    _has_store,
    _live_server,
    _refuse_beside_server,
    app,
    eval_app,
)

report_app = typer.Typer(help="Reports rendered to HTML.", no_args_is_help=True)
wellbeing_app = typer.Typer(help="Wellbeing: parent links and surveys.", no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(wellbeing_app, name="wellbeing")


@report_app.command("satisfaction")
def report_satisfaction(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Render the long-term satisfaction reports (with plots) to one HTML file.

    Beside a running server on this data folder, the server renders it
    (GET /v1/analytics/satisfaction-report).
    """
    from wellbeing.report import read_evaluation, render_report

    if not _has_store(data_dir):
        _fail(f"no store in {data_dir}; build one with 'steerfeed demo --no-serve'")
    server = _live_server(data_dir)
    if server is not None:
        from api.cli.live_server import ServerCallError

        try:
            page = server.call("GET", "/v1/analytics/satisfaction-report").text
        except ServerCallError as exc:
            _fail(str(exc))
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        typer.echo(f"wrote {out}")
        return
    evaluation = read_evaluation(data_dir)
    eng = _engine(data_dir)
    try:
        path = render_report(eng.store, out, evaluation=evaluation)
    finally:
        eng.close()
    typer.echo(f"wrote {path}")


@eval_app.command("wellbeing")
def eval_wellbeing(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="folder for the evaluation world (rebuilt)")
    ] = Path("data/wellbeing_eval"),
    users: Annotated[int, typer.Option(min=20, help="users in the demo world")] = 1000,
    clips: Annotated[int, typer.Option(min=50, help="clips in the demo world")] = 8000,
    events: Annotated[int, typer.Option(min=1000, help="events in the demo world")] = 200_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    eval_users: Annotated[int, typer.Option(min=10, help="users served per arm")] = 300,
    weights: Annotated[str, typer.Option(help="comma-separated head weights")] = "0,0.5,1,2",
) -> None:
    """Demo world -> simulated surveys -> satisfaction job -> pages with vs without the head."""
    from pipelines.offline.demo_world import WorldConfig
    from pipelines.offline.wellbeing_evaluate import evaluate_on_demo_world

    try:
        ws = tuple(float(w) for w in weights.split(","))
    except ValueError:
        _fail(f"--weights must be comma-separated numbers, got {weights!r}")
        return
    if 0.0 not in ws:
        _fail("--weights must include 0 (the value model without the head)")
    report = evaluate_on_demo_world(
        data_dir,
        config=WorldConfig(n_users=users, n_clips=clips, n_events=events, seed=seed),
        weights=ws,
        n_users=eval_users,
        progress=True,
    )
    typer.echo(json.dumps(report, indent=2, default=str))


@eval_app.command("longterm")
def eval_longterm(
    seeds: Annotated[
        int, typer.Option(min=2, help="seeds (a fresh catalogue and cohorts each)")
    ] = 20,
    first_seed: Annotated[int, typer.Option(help="first seed")] = 0,
    people: Annotated[int, typer.Option(min=10, help="people per cohort")] = 300,
    clips: Annotated[int, typer.Option(min=50, help="clips in each catalogue")] = 400,
    weeks: Annotated[int, typer.Option(min=4, help="simulated weeks")] = 26,
    surrogate_weeks: Annotated[
        int, typer.Option(min=1, help="first weeks the surrogate reads")
    ] = 6,
    weight: Annotated[float, typer.Option(min=0.0, help="value weight vs engagement")] = 1.0,
    per_seed: Annotated[bool, typer.Option(help="include every seed's figures")] = False,
) -> None:
    """Long-term simulation: the surrogate for the six-month answer, validated on held-out
    cohorts, and engagement vs wellbeing-aware (surrogate) vs in-the-moment-head policies."""
    from pipelines.offline.longterm_eval import LongtermEvalConfig, evaluate_longterm
    from pipelines.offline.longterm_simulator import LongtermConfig

    if surrogate_weeks >= weeks:
        _fail(f"--surrogate-weeks ({surrogate_weeks}) must be below --weeks ({weeks})")
    config = LongtermEvalConfig(
        seeds=seeds,
        first_seed=first_seed,
        sim=LongtermConfig(n_people=people, n_clips=clips, weeks=weeks),
        surrogate_weeks=surrogate_weeks,
        weight=weight,
    )
    report = evaluate_longterm(config)
    if not per_seed:
        report.pop("per_seed")
    typer.echo(json.dumps(report, indent=2))


@wellbeing_app.command("link-parent")
def link_parent(
    parent_id: Annotated[int, typer.Option(min=0, help="the parent's account id")],
    child_id: Annotated[int, typer.Option(min=0, help="the child's user id")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Link a parent account to a child (what POST /v1/parental/links does; beside a running
    server, through that route)."""
    server = _live_server(data_dir)
    if server is not None:
        body = {"parent_id": parent_id, "child_id": child_id}
        typer.echo(json.dumps(_call(server, "POST", "/v1/parental/links", json=body)))
        return
    eng = _engine(data_dir)
    try:
        if child_id not in eng.state.profiles.users:
            _fail(f"unknown user {child_id}")
        new = eng.wellbeing.repo.link(parent_id, child_id)
    finally:
        eng.close()
    typer.echo(json.dumps({"parent_id": parent_id, "child_id": child_id, "created": new}))


@wellbeing_app.command("simulate-surveys")
def simulate_surveys_cmd(
    data_dir: DataDir = DEFAULT_DATA,
    users: Annotated[int, typer.Option(min=20, help="users the demo was built with")] = 2000,
    clips: Annotated[int, typer.Option(min=50, help="clips the demo was built with")] = 20000,
    events: Annotated[int, typer.Option(min=100, help="events the demo was built with")] = 500_000,
    seed: Annotated[int, typer.Option(help="seed the demo was built with")] = 0,
) -> None:
    """Fill survey answers on a 'steerfeed demo' store from the demo world's ground truth
    (pass the sizes and seed the demo was built with)."""
    from pipelines.offline.demo_world import WorldConfig, build_world
    from pipelines.offline.wellbeing_simulate import simulate_surveys

    # No route writes simulated answers: say so before the world is rebuilt (the slow part).
    _refuse_beside_server(data_dir, "'steerfeed wellbeing simulate-surveys'")
    world = build_world(
        WorldConfig(n_users=users, n_clips=clips, n_events=events, seed=seed), progress=True
    )
    eng = _engine(data_dir)
    try:
        n_users = int(eng.store.scalar("SELECT count(*) FROM users"))
        if n_users != world.users.height:
            _fail(
                f"the store holds {n_users} users but the world has {world.users.height}; "
                "pass the --users/--clips/--events/--seed the demo was built with"
            )
        report = simulate_surveys(eng.store, world, seed=seed)
    finally:
        eng.close()
    typer.echo(json.dumps(report.to_dict()))


transparency_app = typer.Typer(
    help="The public transparency report (hash-chained log).", no_args_is_help=True
)
app.add_typer(transparency_app, name="transparency")


def _anchors(expect: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in expect:
        seq, _, digest = item.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            _fail(
                f"--expect takes SEQ:HASH (a sequence number and a 64-character hash), got {item!r}"
            )
        out[int(seq)] = digest
    return out


@transparency_app.command("publish")
def transparency_publish(data_dir: DataDir = DEFAULT_DATA) -> None:
    """Publish every completed period not yet in the log (what the hourly job does)."""
    from wellbeing.transparency import publish_due

    eng = _engine(data_dir)
    try:
        published = publish_due(eng.store, eng.settings.wellbeing.transparency)
    finally:
        eng.close()
    typer.echo(json.dumps({"published": [e.seq for e in published]}))


@transparency_app.command("verify")
def transparency_verify(
    data_dir: DataDir = DEFAULT_DATA,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="a report saved from GET /v1/transparency (else the store)"),
    ] = None,
    expect: Annotated[
        list[str] | None,
        typer.Option("--expect", help="SEQ:HASH seen in an earlier copy (repeatable)"),
    ] = None,
) -> None:
    """Check the chain: altered, removed or missing periods make it fail (exit code 1)."""
    from datetime import UTC, datetime

    from wellbeing.transparency import entries, verify

    anchors = _anchors(expect or [])
    if file is not None:
        try:
            report = json.loads(file.read_text())
            items = report["entries"]
            period_days = int(report["period_days"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _fail(f"{file} is not a report saved from GET /v1/transparency: {exc}")
            return
    else:
        eng = _engine(data_dir)
        try:
            items = entries(eng.store)
            period_days = eng.settings.wellbeing.transparency.period_days
        finally:
            eng.close()
    try:
        result = verify(items, period_days=period_days, now=datetime.now(UTC), anchors=anchors)
    except (KeyError, ValueError, TypeError) as exc:
        _fail(f"malformed entry in the report: {exc}")
        return
    typer.echo(json.dumps(result.as_dict(), indent=2))
    if not result.ok:
        raise typer.Exit(1)
