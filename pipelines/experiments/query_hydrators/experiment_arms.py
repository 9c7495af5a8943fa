"""Query hydrator: assigns the requesting user to the arms of the running experiments."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any

from pipelines.experiments.assignment import assign, in_holdback
from pipelines.experiments.definitions import Experiment
from ranking.pipeline import FeedQuery

logger = logging.getLogger(__name__)

#: Exposure value of a user held back from a running experiment (long-term holdback group).
HOLDBACK_ARM = "_holdback"


class ExperimentArmsQueryHydrator:
    """Writes ``query.context.experiments = {experiment: arm}`` (logged on every impression)
    and copies each arm's settings into ``query.overrides``.

    ``running`` returns the running experiments (the repository's cached list). Users in an
    experiment's long-term holdback are logged with arm ``_holdback`` and get no overrides.
    Overrides the request already carries win (an explicit override is never replaced), and
    when two experiments set the same key the first by name wins (logged). This hydrator runs
    first among the extra query hydrators so that the others see the arm settings. A failure
    never fails the page: the user is then served the defaults, unexposed.
    """

    name = "experiment_arms"

    def __init__(self, running: Callable[[], list[Experiment]]) -> None:
        self.running = running

    def hydrate(self, query: FeedQuery) -> None:
        """Assign and record the arms."""
        exposure = query.context.experiments
        try:
            experiments = self.running()
        except Exception:
            logger.exception("could not read running experiments; serving defaults")
            return
        at = query.now.replace(tzinfo=UTC) if query.now.tzinfo is None else query.now
        explicit = set(query.overrides.as_dict())
        set_by: dict[str, str] = {}
        update: dict[str, Any] = {}
        for exp in experiments:
            if not exp.is_active(at):
                continue
            if exp.holdback > 0.0 and in_holdback(query.user_id, holdback_share=exp.holdback):
                exposure[exp.name] = HOLDBACK_ARM
                continue
            arm_name = assign(exp, query.user_id)
            if arm_name is None:
                continue
            exposure[exp.name] = arm_name
            for key, value in exp.arm(arm_name).overrides.as_dict().items():
                if key in explicit:
                    continue
                if key in set_by:
                    logger.warning(
                        "experiments %s and %s both set %s; %s wins",
                        set_by[key],
                        exp.name,
                        key,
                        set_by[key],
                    )
                    continue
                set_by[key] = exp.name
                update[key] = value
        if update:  # validated values (the arms were validated when defined)
            query.overrides = query.overrides.model_copy(update=update)
