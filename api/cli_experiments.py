"""Experiment commands: ``steerfeed experiments list|add|start|stop|analyze|verify`` and
``steerfeed simulate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli import DEFAULT_DATA, DataDir, _fail, app

experiments_app = typer.Typer(help="A/B experiments.", no_args_is_help=True)
app.add_typer(experiments_app, name="experiments")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _store(data_dir: Path) -> Any:
    from storage.store import Store

    db = data_dir / "steerfeed.duckdb"
    if not db.exists():
        _fail(f"no store in {data_dir}; build one with 'steerfeed demo --no-serve'")
    return Store(db)


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
    from pipelines.experiments.simulator import SimulationConfig, run_simulation

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
