"""Deterministic, versioned assignment of users to experiment arms.

Every decision comes from a keyed hash of ``f"{version}:{salt}:{user_id}"`` (BLAKE2b, 64 bits)
mapped to a uniform number in ``[0, 1)``, so it is the same in every process, on every machine
and across restarts (Python's ``hash()`` is salted per process and never used).

Three independent draws decide a user's arm:

1. the global holdback (salt ``global-holdback``): users below ``holdback`` are in no
   experiment at all;
2. the experiment's allocation (salt ``f"{salt}#allocation"``): eligible users below
   ``allocation`` enter the experiment;
3. the arm bucket (the experiment's salt): cut by the cumulative arm weights.

Because draws 2 and 3 use different salts, ramping ``allocation`` up keeps every user already in
the experiment in the arm they had.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from pipelines.experiments.definitions import Experiment
from pipelines.experiments.errors import ExperimentDefinitionError

logger = logging.getLogger(__name__)

#: Version of the hashing scheme; bump it only together with a migration of running experiments.
ASSIGNMENT_VERSION = 1
#: Salt of the long-term holdback shared by all experiments.
GLOBAL_HOLDBACK_SALT = "global-holdback"
_TWO_64 = float(2**64)


def unit_hash(salt: str, user_id: str | int, *, version: int = ASSIGNMENT_VERSION) -> float:
    """Map ``(version, salt, user_id)`` to a uniform number in ``[0, 1)``.

    Parameters
    ----------
    salt : str
        Hash salt.
    user_id : str or int
        User identifier (formatted with ``str``).
    version : int, optional
        Assignment scheme version.

    Returns
    -------
    float
        ``blake2b(f"{version}:{salt}:{user_id}")`` read as a 64-bit integer over ``2**64``.
    """
    key = f"{version}:{salt}:{user_id}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


def in_holdback(
    user_id: str | int,
    *,
    holdback_share: float,
    salt: str = GLOBAL_HOLDBACK_SALT,
    version: int = ASSIGNMENT_VERSION,
) -> bool:
    """Whether a user is in the long-term holdback, excluded from all experiments.

    Holdback sets are nested: a user held back at share ``h`` is held back at every share above.

    Parameters
    ----------
    user_id : str or int
        User identifier.
    holdback_share : float
        Share of users in the holdback, in ``[0, 1]``.
    salt : str, optional
        Global holdback salt.
    version : int, optional
        Assignment scheme version.

    Returns
    -------
    bool
        True when the user is held back.

    Raises
    ------
    ExperimentDefinitionError
        If ``holdback_share`` lies outside ``[0, 1]``.
    """
    if not 0.0 <= holdback_share <= 1.0:
        msg = f"holdback_share must lie in [0, 1], got {holdback_share}"
        raise ExperimentDefinitionError(msg)
    return unit_hash(salt, user_id, version=version) < holdback_share


def assign(
    experiment: Experiment,
    user_id: str | int,
    *,
    at: datetime | None = None,
    version: int = ASSIGNMENT_VERSION,
) -> str | None:
    """Return the arm a user is in, or None.

    Parameters
    ----------
    experiment : Experiment
        The experiment.
    user_id : str or int
        User identifier.
    at : datetime or None, optional
        When given, the user is assigned only if the experiment is active at that instant
        (status running and inside its ``[start, stop)`` window).
    version : int, optional
        Assignment scheme version.

    Returns
    -------
    str or None
        Arm name; None when the experiment is not running, the user is in the global holdback,
        or the user is not allocated to the experiment.
    """
    if experiment.status != "running":
        return None
    if at is not None and not experiment.is_active(at):
        return None
    if in_holdback(user_id, holdback_share=experiment.holdback, version=version):
        return None
    allocation_draw = unit_hash(f"{experiment.salt}#allocation", user_id, version=version)
    if allocation_draw >= experiment.allocation:
        return None
    total = sum(arm.weight for arm in experiment.arms)
    point = unit_hash(experiment.salt, user_id, version=version) * total
    cumulative = 0.0
    for arm in experiment.arms:
        cumulative += arm.weight
        if point < cumulative:
            return arm.name
    return experiment.arms[-1].name  # float rounding at the very top of the range


def assign_many(
    experiment: Experiment,
    user_ids: Iterable[str | int],
    *,
    at: datetime | None = None,
) -> dict[str, int]:
    """Count how many of ``user_ids`` land in each arm (and how many in none).

    Parameters
    ----------
    experiment : Experiment
        The experiment.
    user_ids : Iterable[str or int]
        Users to assign.
    at : datetime or None, optional
        Passed on to :func:`assign`.

    Returns
    -------
    dict[str, int]
        Count per arm name, every arm present, plus ``"<none>"`` for unassigned users.
    """
    counts: Counter[str] = Counter({name: 0 for name in experiment.arm_names})
    counts["<none>"] = 0
    for user_id in user_ids:
        counts[assign(experiment, user_id, at=at) or "<none>"] += 1
    logger.debug("assigned experiment=%s counts=%s", experiment.name, dict(counts))
    return dict(counts)
