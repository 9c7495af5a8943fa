"""Install the clip generator into an engine.

Adds to ``engine.deps``:

- candidate source :class:`GeneratedForMoodSource` ("made for your mood"), first of the extra
  sources so generated clips keep its label;
- filters :class:`CameoConsentFilter` (a set lookup) and :class:`RightsOptOutFilter`
  (precomputed flags), cheap, after the core filters;
- post-selection filter :class:`GeneratedLabelPostFilter` (``generated``,
  ``made_for_your_mood`` and ``media_url`` in each item's explanation);

and registers ``engine.generation`` (:class:`GenerationService`) and a ``generation`` health
check. Idempotent and cheap: no model, embedder or table is touched until first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipelines.generation.filters.cameo_consent import CameoConsentFilter
from pipelines.generation.filters.rights_optout import RightsOptOutFilter
from pipelines.generation.post_hydrators.generated_label import GeneratedLabelPostFilter
from pipelines.generation.service import GenerationService
from pipelines.generation.settings import GenerationSettings
from pipelines.generation.sources.generated import GeneratedForMoodSource
from pipelines.plugins import installed

if TYPE_CHECKING:
    from pipelines.serving.engine import Engine

logger = logging.getLogger(__name__)


def generation_of(engine: Engine) -> GenerationService:
    """The engine's generation service, installing it on first use."""
    svc: GenerationService = installed(engine, "generation", install)
    return svc


def install(engine: Engine, settings: GenerationSettings | None = None) -> None:
    """Engine extension hook (``pipelines.serving.engine.EXTENSIONS``)."""
    svc: GenerationService | None = getattr(engine, "generation", None)
    if svc is None:
        svc = GenerationService(engine, settings)
        engine.generation = svc  # type: ignore[attr-defined]
    s = svc.settings
    deps = engine.deps
    if not any(isinstance(x, GeneratedForMoodSource) for x in deps.extra_sources):
        deps.extra_sources.insert(
            0,
            GeneratedForMoodSource(
                deps.state, limit=s.source_limit, min_similarity=s.source_min_similarity
            ),
        )
    if not any(isinstance(f, CameoConsentFilter) for f in deps.extra_filters):
        deps.extra_filters.append(CameoConsentFilter(deps.state, svc.consents))
    if not any(isinstance(f, RightsOptOutFilter) for f in deps.extra_filters):
        deps.extra_filters.append(RightsOptOutFilter(deps.state, svc.optouts))
    if not any(isinstance(f, GeneratedLabelPostFilter) for f in deps.extra_post_filters):
        deps.extra_post_filters.append(GeneratedLabelPostFilter(deps.state, svc.media_url))
    engine.health_checks["generation"] = svc.health
    engine.rebuild_products()
    if "following_only" in engine.products:
        from pipelines.serving.products.following_only import build_following_only_feed

        engine.products["following_only"] = build_following_only_feed(engine.deps)
    logger.info("generation installed (model %s)", s.model or "not configured")
