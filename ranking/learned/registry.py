"""The model registry on disk: versioned learned models, their metrics, promotion and rollback.

Layout under ``<data_dir>/models``::

    registry.json            {"serving": "v...", "history": ["v1", "v2", ...]}
    v20250602T120000-1a2b3c/ one folder per trained model
        meta.json            features, heads, checksums, weights, metrics, windows
        head_like.txt ...    LightGBM text models (one per learned head)
        ranker.txt           the lambdarank model

A trained model is only *saved*; it serves once *promoted*. :func:`promotion_gate` decides
whether it may be: on a held-out window of requests that came **after** everything the
candidate was trained on, its NDCG@10 must beat the serving model's (or, when nothing learned
serves yet, the hand-weighted scorer's) by at least ``min_gain``. ``history`` keeps every
promoted version in order, so :meth:`ModelRegistry.rollback` returns to the previous one (and to
the hand-weighted scorer when there is none). Model folders are never deleted by promotion or
rollback.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb

from ranking.learned.training import (
    NDCG_K,
    Examples,
    evaluate_scores,
    hand_weighted_scores,
    ndcg_at_k,
)
from ranking.learned.value_model import (
    EXPLAINER_FILE,
    RETRIEVERS_FILE,
    LearnedModelError,
    LearnedValueModel,
    ValueWeights,
)

logger = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
META_FILE = "meta.json"
HAND_WEIGHTED = "hand_weighted"


class PromotionRefused(LearnedModelError):
    """A model that did not pass the promotion gate (the message says by how much)."""


@dataclass(frozen=True)
class ModelRecord:
    """What the registry knows about one saved model (its ``meta.json``)."""

    version: str
    created_at: str
    feature_names: tuple[str, ...]
    metrics: dict[str, Any]
    holdout_start: str | None
    n_train: int
    serving: bool
    meta: dict[str, Any]


@dataclass(frozen=True)
class GateResult:
    """The outcome of :func:`promotion_gate` on one held-out window."""

    passed: bool
    candidate: str
    candidate_ndcg: float | None
    incumbent: str
    incumbent_ndcg: float | None
    n_requests: int
    min_gain: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (written into the candidate's ``meta.json``)."""
        return {
            "passed": self.passed,
            "candidate": self.candidate,
            f"candidate_ndcg@{NDCG_K}": self.candidate_ndcg,
            "incumbent": self.incumbent,
            f"incumbent_ndcg@{NDCG_K}": self.incumbent_ndcg,
            "n_requests": self.n_requests,
            "min_gain": self.min_gain,
        }

    def message(self) -> str:
        """One line saying who won and by how much."""
        c = "n/a" if self.candidate_ndcg is None else f"{self.candidate_ndcg:.4f}"
        i = "n/a" if self.incumbent_ndcg is None else f"{self.incumbent_ndcg:.4f}"
        verdict = "beats" if self.passed else "does not beat"
        return (
            f"{self.candidate} (NDCG@{NDCG_K} {c}) {verdict} {self.incumbent} ({i}) by the "
            f"required {self.min_gain} on {self.n_requests} held-out later requests"
        )


def promotion_gate(
    candidate: LearnedValueModel,
    incumbent: LearnedValueModel | None,
    holdout: Examples,
    *,
    min_gain: float = 0.0,
) -> GateResult:
    """Compare a candidate with the serving model on a held-out later window.

    Parameters
    ----------
    candidate
        The newly trained model.
    incumbent
        The serving model, or None when the hand-weighted scorer serves.
    holdout
        Requests later than anything the candidate was trained on, with the features logged at
        their impressions.
    min_gain
        How much higher the candidate's NDCG@10 must be.

    Returns
    -------
    GateResult
        ``passed`` only when both NDCGs are defined and the candidate wins by ``min_gain``.
    """

    f = holdout.frame
    x = candidate.matrix(f)
    cand_ndcg, n_req = ndcg_at_k(f["request_id"], candidate.value(x), f["relevance"].to_numpy())
    if incumbent is None:
        name = HAND_WEIGHTED
        inc_ndcg = evaluate_scores(hand_weighted_scores(f), holdout)
    else:
        name = incumbent.version or "serving"
        inc_ndcg = evaluate_scores(incumbent.score_frame(f), holdout)
    passed = cand_ndcg is not None and inc_ndcg is not None and cand_ndcg >= inc_ndcg + min_gain
    if incumbent is None and inc_ndcg is None and cand_ndcg is not None:
        passed = False  # nothing to compare with: never promote blind
    return GateResult(
        passed=bool(passed),
        candidate=candidate.version or "candidate",
        candidate_ndcg=cand_ndcg,
        incumbent=name,
        incumbent_ndcg=inc_ndcg,
        n_requests=n_req,
        min_gain=min_gain,
    )


def _new_version(now: datetime) -> str:
    return f"v{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


class ModelRegistry:
    """Versioned learned models in a folder (see the module docstring).

    Parameters
    ----------
    root
        The registry folder (``<data_dir>/models``); created on the first save.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- the pointer ----------------------------------------------------------------------------
    def _index(self) -> dict[str, Any]:
        path = self.root / REGISTRY_FILE
        if not path.exists():
            return {"serving": None, "history": []}
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"model registry index {path} is unreadable: {exc}"
            raise LearnedModelError(msg) from exc
        if not isinstance(data, dict):
            msg = f"model registry index {path} is not a JSON object"
            raise LearnedModelError(msg)
        data.setdefault("serving", None)
        data.setdefault("history", [])
        return data

    def index_mtime(self) -> float | None:
        """Modification time of ``registry.json`` (None before the first promotion)."""
        try:
            return (self.root / REGISTRY_FILE).stat().st_mtime
        except FileNotFoundError:
            return None

    def serving_version(self) -> str | None:
        """The promoted version that serves (None: the hand-weighted scorer serves)."""
        v = self._index().get("serving")
        return str(v) if v else None

    def history(self) -> list[str]:
        """Promoted versions, oldest first (the last one serves)."""
        return [str(v) for v in self._index().get("history", [])]

    # -- models ---------------------------------------------------------------------------------
    def exists(self, version: str) -> bool:
        """Whether a model folder with a ``meta.json`` is stored for ``version``."""
        return (self.root / version / META_FILE).is_file()

    def _meta(self, version: str) -> dict[str, Any]:
        path = self.root / version / META_FILE
        if not path.is_file():
            known = ", ".join(self.versions()) or "none"
            msg = f"unknown model version {version!r}; stored: {known}"
            raise LearnedModelError(msg)
        try:
            meta: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"model metadata {path} is unreadable: {exc}"
            raise LearnedModelError(msg) from exc
        return meta

    def versions(self) -> list[str]:
        """Stored versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / META_FILE).is_file())

    def records(self) -> list[ModelRecord]:
        """A :class:`ModelRecord` per stored version, oldest first (by creation time)."""
        serving = self.serving_version()
        out = []
        for v in self.versions():
            m = self._meta(v)
            out.append(
                ModelRecord(
                    version=v,
                    created_at=str(m.get("created_at", "")),
                    feature_names=tuple(m.get("feature_names", ())),
                    metrics=dict(m.get("metrics", {})),
                    holdout_start=m.get("holdout_start"),
                    n_train=int(m.get("n_train", 0)),
                    serving=v == serving,
                    meta=m,
                )
            )
        return sorted(out, key=lambda r: (r.created_at, r.version))

    def save(
        self,
        model: LearnedValueModel,
        *,
        metrics: dict[str, Any],
        holdout_start: datetime | None,
        n_train: int,
        extra: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> str:
        """Store a trained model under a new version and return it (it does not serve yet)."""
        now = now or datetime.now(UTC).replace(tzinfo=None)
        version = _new_version(now)
        folder = self.root / version
        checksums = model.save(folder)
        meta = {
            "version": version,
            "created_at": now.isoformat(timespec="microseconds"),
            "feature_names": list(model.feature_names),
            "heads": model.head_files(),
            "ranker": "ranker.txt" if model.ranker is not None else None,
            "explainer": EXPLAINER_FILE if model.explainer is not None else None,
            "retrievers": RETRIEVERS_FILE if model.retrievers is not None else None,
            # how closely the distilled explainer follows the value (r2, spearman)
            "explainer_fidelity": model.meta.get("explainer_fidelity") if model.explainer else None,
            "checksums": checksums,
            "weights": model.weights.model_dump(),
            "metrics": metrics,
            "holdout_start": holdout_start.isoformat() if holdout_start else None,
            "n_train": n_train,
            "lightgbm": lgb.__version__,
            **(extra or {}),
        }
        _write_json(folder / META_FILE, meta)
        model.version = version
        model.meta = meta
        logger.info("saved model %s (%d files) in %s", version, len(checksums), folder)
        return version

    def update_meta(self, version: str, **fields: Any) -> None:
        """Merge ``fields`` into a stored model's ``meta.json``."""
        meta = self._meta(version)
        meta.update(fields)
        _write_json(self.root / version / META_FILE, meta)

    def load(self, version: str) -> LearnedValueModel:
        """Load a stored model, verifying every file against its recorded checksum.

        Raises
        ------
        LearnedModelError
            When the version is unknown or a file is missing, altered or unreadable.
        """
        meta = self._meta(version)
        try:
            weights = ValueWeights(**meta.get("weights", {}))
        except Exception as exc:
            msg = f"model {version} has invalid weights: {exc}"
            raise LearnedModelError(msg) from exc
        return LearnedValueModel.load(
            self.root / version,
            feature_names=meta["feature_names"],
            heads=meta["heads"],
            ranker=meta.get("ranker"),
            explainer=meta.get("explainer"),
            retrievers=meta.get("retrievers"),
            checksums=meta.get("checksums", {}),
            weights=weights,
            version=version,
            meta=meta,
        )

    # -- promotion and rollback -----------------------------------------------------------------
    def promote(self, version: str, gate: GateResult) -> None:
        """Make ``version`` serve, when ``gate`` (run on a later held-out window) passed.

        Raises
        ------
        PromotionRefused
            When the gate did not pass, or was run for another model.
        LearnedModelError
            When the version is unknown or its files do not load.
        """
        if gate.candidate != version:
            msg = f"the gate result is for {gate.candidate}, not {version}"
            raise PromotionRefused(msg)
        self.load(version)  # never point serving at files that do not load
        self.update_meta(version, gate=gate.as_dict())
        if not gate.passed:
            msg = f"not promoted: {gate.message()}"
            raise PromotionRefused(msg)
        idx = self._index()
        history = [v for v in idx["history"] if v != version] + [version]
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(
            self.root / REGISTRY_FILE,
            {**idx, "serving": version, "history": history, "updated_at": _now_iso()},
        )
        logger.info("promoted model %s: %s", version, gate.message())

    def rollback(self) -> str | None:
        """Serve the previously promoted model again (None: back to the hand-weighted scorer).

        Raises
        ------
        LearnedModelError
            When no model serves, so there is nothing to roll back.
        """
        idx = self._index()
        current = idx.get("serving")
        if not current:
            msg = "no learned model serves; nothing to roll back"
            raise LearnedModelError(msg)
        history = [v for v in idx["history"] if v != current]
        previous = history[-1] if history else None
        rolled = [*idx.get("rolled_back", []), current]
        _write_json(
            self.root / REGISTRY_FILE,
            {
                **idx,
                "serving": previous,
                "history": history,
                "rolled_back": rolled,
                "updated_at": _now_iso(),
            },
        )
        logger.info("rolled back model %s -> %s", current, previous or HAND_WEIGHTED)
        return previous


def _now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
