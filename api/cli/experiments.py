"""Experiment commands: ``steerfeed experiments list|add|start|stop|analyze|ope|verify`` and
``steerfeed simulate``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.core import DEFAULT_DATA, DataDir, _fail, _has_store, _open_store, app

experiments_app = typer.Typer(help="A/B experiments.", no_args_is_help=True)
app.add_typer(experiments_app, name="experiments")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _store(data_dir: Path) -> Any:
    if not _has_store(data_dir):
        _fail(f"no store in {data_dir}; build one with 'steerfeed demo --no-serve'")
    return _open_store(data_dir)


def _emit(data: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@experiments_app.command("list")
def experiments_list(data_dir: DataDir = DEFAULT_DATA, as_json: JsonOpt = False) -> None:
    """List stored experiments and their status."""
    from pipelines.experiments.repository import ExperimentRepository

    store = _store(data_dir)
    try:
        items = ExperimentRepository(store).list_all()
    finally:
        store.close()
    lines = [
        f"{e['name']:<32} {e['status']:<8} arms={','.join(a['name'] for a in e['arms'])}"
        for e in items
    ]
    _emit({"experiments": items}, as_json, "\n".join(lines) or "no experiments")


@experiments_app.command("add")
def experiments_add(
    file: Annotated[Path, typer.Argument(help="experiment YAML file")],
    data_dir: DataDir = DEFAULT_DATA,
    replace: Annotated[bool, typer.Option(help="replace an existing definition")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Store an experiment from a YAML file (its status as the file says, default draft)."""
    from pipelines.experiments.definitions import load_experiment
    from pipelines.experiments.errors import ExperimentDefinitionError
    from pipelines.experiments.repository import ExperimentRepository

    try:
        exp = load_experiment(file)
    except ExperimentDefinitionError as exc:
        _fail(str(exc))
    store = _store(data_dir)
    try:
        repo = ExperimentRepository(store)
        if exp.name in repo.names() and not replace:
            _fail(f"experiment {exp.name!r} exists; pass --replace to replace it")
        repo.save(exp)
    finally:
        store.close()
    _emit(exp.model_dump(mode="json"), as_json, f"stored {exp.name} ({exp.status})")


def _set_status(name: str, status: str, data_dir: Path, as_json: bool) -> None:
    from pipelines.experiments.repository import ExperimentRepository, UnknownExperimentError

    store = _store(data_dir)
    try:
        exp = ExperimentRepository(store).set_status(name, status)  # type: ignore[arg-type]
    except UnknownExperimentError as exc:
        _fail(str(exc))
    finally:
        store.close()
    _emit(exp.model_dump(mode="json"), as_json, f"{name}: {status}")


@experiments_app.command("start")
def experiments_start(
    name: Annotated[str, typer.Argument(help="experiment name")],
    data_dir: DataDir = DEFAULT_DATA,
    as_json: JsonOpt = False,
) -> None:
    """Start an experiment (a server sees it within its cache TTL, 5 s by default)."""
    _set_status(name, "running", data_dir, as_json)


@experiments_app.command("stop")
def experiments_stop(
    name: Annotated[str, typer.Argument(help="experiment name")],
    data_dir: DataDir = DEFAULT_DATA,
    as_json: JsonOpt = False,
) -> None:
    """Stop an experiment (nobody is assigned any more; the log stays for analysis)."""
    _set_status(name, "stopped", data_dir, as_json)


@experiments_app.command("analyze")
def experiments_analyze(
    name: Annotated[str, typer.Argument(help="experiment name")],
    data_dir: DataDir = DEFAULT_DATA,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="1 - confidence")] = 0.05,
    tolerance: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="guardrail tolerance (relative)")
    ] = 0.05,
    as_json: JsonOpt = False,
) -> None:
    """Analyse an experiment from the impression log and store the report for the dashboard."""
    from pipelines.experiments.analysis import analyze
    from pipelines.experiments.repository import ExperimentRepository, UnknownExperimentError

    store = _store(data_dir)
    try:
        repo = ExperimentRepository(store)
        try:
            exp = repo.get(name)
        except UnknownExperimentError as exc:
            _fail(str(exc))
        report = analyze(store, exp, alpha=alpha, guardrail_tolerance=tolerance)
        repo.save_result(name, "analysis", report)
    finally:
        store.close()
    _emit(report, as_json, _analysis_text(report))


def _analysis_text(report: dict[str, Any]) -> str:
    lines = [f"experiment {report['experiment']}: {report['exposed_users']} exposed users"]
    for arm in report["arms"]:
        lines.append(f"  arm {arm['name']}: {arm['users']} users")
    srm = report.get("srm")
    if srm:
        flag = "ALARM" if srm["alarm"] else "ok"
        lines.append(f"  SRM: chi2={srm['chi2']:.2f} p={srm['p_value']:.3g} {flag}")
    for comp in report["comparisons"]:
        lines.append(f"  {comp['arm']} vs {comp['control']}:")
        for name, m in comp["metrics"].items():
            if "error" in m:
                lines.append(f"    {name:<14} n/a ({m['error']})")
                continue
            lines.append(
                f"    {name:<14} diff={m['diff']:+.4g} CI [{m['ci_low']:+.4g}, "
                f"{m['ci_high']:+.4g}] p={m['p_value']:.3g}"
            )
        lines.append(f"    guardrails: {comp['guardrails']['status']}")
    il = report.get("interleaving")
    if il and il.get("pages"):
        lines.append(
            f"  interleaving {il['a']} (A) vs {il['b']} (B): {il['pages']} pages, "
            f"wins A={il['wins_a']} B={il['wins_b']} ties={il['ties']} p={il['p_value']:.3g} "
            f"winner={il['winner'] or 'none'}"
        )
    for arm, ope in (report.get("off_policy") or {}).items():
        greedy = ope["targets"].get("greedy", {}).get("dr")
        if greedy:
            lines.append(
                f"  off-policy ({arm}, {ope['impressions']} exploring slots): greedy ranker "
                f"DR {greedy['value']:.4f} [{greedy['ci_low']:.4f}, {greedy['ci_high']:.4f}] "
                f"vs logged {ope['logged']['value']:.4f}"
            )
    return "\n".join(lines)


def _parse_time(value: str | None, option: str) -> datetime | None:
    """ISO-8601 timestamp (aware ones converted to naive UTC, as the event log stores them)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option}: not an ISO-8601 timestamp: {value!r} (e.g. 2026-11-01T00:00:00Z)")
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@experiments_app.command("ope")
def experiments_ope(
    data_dir: DataDir = DEFAULT_DATA,
    since: Annotated[
        str | None, typer.Option(help="impressions from this ISO time (UTC if naive)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="impressions before this ISO time")] = None,
    window: Annotated[
        float, typer.Option(min=1.0, help="seconds after an impression a reward counts")
    ] = 1800.0,
    target_rate: Annotated[
        list[float] | None,
        typer.Option(
            "--target-rate",
            min=0.0,
            max=1.0,
            help="extra target: the same selector at this exploration rate (repeatable)",
        ),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="only impressions logged in this experiment")
    ] = None,
    arm: Annotated[str | None, typer.Option(help="only this arm (needs --experiment)")] = None,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="1 - confidence")] = 0.05,
    max_weight: Annotated[
        float | None, typer.Option(min=1.0, help="clip importance weights (biased)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Off-policy estimates (IPS, SNIPS, doubly robust) from the exploring feed's log.

    Estimates the mean reward per served slot (long view or like within WINDOW s) of the same
    ranker without exploration ('greedy') and of explored clips only ('explore_only'), from
    pages served with an exploration rate > 0.
    """
    from pipelines.experiments.errors import StatsInputError
    from pipelines.experiments.ope_log import DEFAULT_TARGETS, off_policy_report

    if arm is not None and experiment is None:
        _fail("--arm needs --experiment")
    start, stop = _parse_time(since, "--since"), _parse_time(until, "--until")
    if start is not None and stop is not None and stop <= start:
        _fail("--until must be after --since")
    targets = dict(DEFAULT_TARGETS)
    for t in target_rate or []:
        targets[f"rate_{t:g}"] = t
    store = _store(data_dir)
    try:
        report = off_policy_report(
            store,
            since=start,
            until=stop,
            reward_window_s=window,
            targets=targets,
            experiment=experiment,
            arm=arm,
            alpha=alpha,
            max_weight=max_weight,
        )
    except StatsInputError as exc:
        _fail(str(exc))
    finally:
        store.close()
    _emit(report, as_json, _ope_text(report))


def _ope_text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['impressions']} impressions on {report['pages']} exploring pages "
        f"({report['explored_slots']} explored slots, rates {report['rates']})",
        f"reward: {report['reward']}",
    ]
    if report.get("message"):
        lines.append(report["message"])
        return "\n".join(lines)
    logged = report["logged"]
    lines.append(
        f"  logged policy {logged['value']:.4f} [{logged['ci_low']:.4f}, {logged['ci_high']:.4f}]"
    )
    for name, t in report["targets"].items():
        lines.append(f"  {name} (rate {t['target_rate']:g}): {t['description']}")
        for method in ("ips", "snips", "dr"):
            if method in t:
                e = t[method]
                lines.append(
                    f"    {method:<6} {e['value']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}] "
                    f"ess={e['effective_sample_size']:.0f}"
                )
    return "\n".join(lines)


@experiments_app.command("verify")
def experiments_verify(
    runs: Annotated[int, typer.Option(min=50, help="simulated experiments per check")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Statistical verification: A/A false-positive rate, CI coverage, CUPED, SRM, mSPRT."""
    from pipelines.experiments.verification import verification_report

    report = verification_report(n_runs=runs, seed=seed)
    _emit(report, as_json, json.dumps(report, indent=2, default=str))


@app.command("simulate")
def simulate(
    experiment: Annotated[Path, typer.Option("--experiment", help="experiment YAML file")],
    days: Annotated[int, typer.Option(min=1, max=365, help="simulated days")] = 7,
    users: Annotated[int, typer.Option(min=20, help="simulated users (world size)")] = 300,
    clips: Annotated[int, typer.Option(min=100, help="clips in the simulated world")] = 3000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="folder for the simulation world (rebuilt)")
    ] = Path("data/simulation"),
    as_json: JsonOpt = False,
) -> None:
    """Run an experiment on simulated users for N days against the real pipeline."""
    from pipelines.experiments.definitions import load_experiment
    from pipelines.experiments.errors import ExperimentDefinitionError
    from pipelines.offline.experiments_simulator import SimulationConfig, run_simulation

    try:
        exp = load_experiment(experiment)
    except ExperimentDefinitionError as exc:
        _fail(str(exc))
    cfg = SimulationConfig(days=days, n_users=users, n_clips=clips, seed=seed)
    report = run_simulation(exp, data_dir, cfg, progress=not as_json)
    _emit(report, as_json, _simulation_text(report))


def _simulation_text(report: dict[str, Any]) -> str:
    lines = [
        f"simulated {report['config']['days']} days, {report['simulated_users']} users, "
        f"{report['pages']} pages in {report['seconds']} s"
    ]
    for arm in report["arms"]:
        lines.append(f"  arm {arm['name']}: {arm['users']} users")
    for comp in report["comparisons"]:
        lines.append(f"  {comp['arm']} vs {comp['control']}:")
        for name, m in comp["metrics"].items():
            if "diff" not in m or m.get("diff") is None:
                continue
            lines.append(
                f"    {name:<22} {m['mean_a']:.4g} -> {m['mean_b']:.4g}  diff={m['diff']:+.4g} "
                f"CI [{m['ci_low']:+.4g}, {m['ci_high']:+.4g}]"
            )
    return "\n".join(lines)
