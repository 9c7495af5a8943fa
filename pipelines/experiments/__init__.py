"""A/B experiments: definitions, deterministic assignment and the statistics to read them.

- :mod:`~pipelines.experiments.definitions`: :class:`Experiment` / :class:`Arm` and
  :func:`load_experiment` (YAML).
- :mod:`~pipelines.experiments.assignment`: versioned hash assignment (:func:`assign`) and the
  global long-term holdback (:func:`in_holdback`).
- :mod:`~pipelines.experiments.stats`: Welch, delta-method ratio metrics, CUPED, SRM, mSPRT
  always-valid p-values, guardrail verdicts.
- :mod:`~pipelines.experiments.interleaving`: team-draft interleaving and its sign test.
- :mod:`~pipelines.experiments.off_policy`: IPS, SNIPS, doubly robust; exploration propensities.
- :mod:`~pipelines.experiments.ope_log`: those estimates read from the exploring feed's
  impression log (``steerfeed experiments ope``).
- :mod:`~pipelines.experiments.interleaving_log`: wins of ranker A vs B read from the pages
  :class:`~pipelines.experiments.selectors.interleaving.InterleavingSelector` interleaved.
- :mod:`~pipelines.experiments.verification`: simulation figures for the benchmark command.
"""

from __future__ import annotations

from pipelines.experiments.assignment import (
    ASSIGNMENT_VERSION,
    GLOBAL_HOLDBACK_SALT,
    assign,
    assign_many,
    in_holdback,
    unit_hash,
)
from pipelines.experiments.definitions import (
    OVERRIDABLE_SETTINGS,
    VALUE_WEIGHT_PREFIX,
    Arm,
    Experiment,
    load_experiment,
    parse_experiment,
)
from pipelines.experiments.errors import ExperimentDefinitionError, ExperimentError, StatsInputError
from pipelines.experiments.interleaving import (
    InterleavingResult,
    interleaving_credit,
    interleaving_test,
    team_draft_interleave,
)
from pipelines.experiments.off_policy import (
    OffPolicyEstimate,
    doubly_robust_estimate,
    exploration_propensities,
    ips_estimate,
    snips_estimate,
)
from pipelines.experiments.stats import (
    CupedEstimate,
    Estimate,
    MsprtResult,
    SrmResult,
    Verdict,
    cuped_adjust,
    cuped_diff,
    diff_in_means,
    guardrail_verdict,
    msprt,
    msprt_pvalues,
    ratio_metric_diff,
    srm_check,
)

__all__ = [
    "ASSIGNMENT_VERSION",
    "GLOBAL_HOLDBACK_SALT",
    "OVERRIDABLE_SETTINGS",
    "VALUE_WEIGHT_PREFIX",
    "Arm",
    "CupedEstimate",
    "Estimate",
    "Experiment",
    "ExperimentDefinitionError",
    "ExperimentError",
    "InterleavingResult",
    "MsprtResult",
    "OffPolicyEstimate",
    "SrmResult",
    "StatsInputError",
    "Verdict",
    "assign",
    "assign_many",
    "cuped_adjust",
    "cuped_diff",
    "diff_in_means",
    "doubly_robust_estimate",
    "exploration_propensities",
    "guardrail_verdict",
    "in_holdback",
    "interleaving_credit",
    "interleaving_test",
    "ips_estimate",
    "load_experiment",
    "msprt",
    "msprt_pvalues",
    "parse_experiment",
    "ratio_metric_diff",
    "snips_estimate",
    "srm_check",
    "team_draft_interleave",
    "unit_hash",
]
