"""Install the clip generator into an engine.

Adds to ``engine.deps``:

- candidate source :class:`GeneratedForMoodSource` ("made for your mood"), first of the extra
  sources so generated clips keep its label;
- filters :class:`CameoConsentFilter` (dict lookups) and :class:`RightsOptOutFilter`
  (precomputed flags), cheap, after the core filters;
- post-selection filter :class:`GeneratedLabelPostFilter` (``generated``,
  ``made_for_your_mood`` and ``media_url`` in each item's explanation; signed for clips whose
  people limit who may see them, see :mod:`pipelines.generation.media_access`);

and registers ``engine.generation`` (:class:`GenerationService`), ``engine.media_access``
(:class:`MediaAccess`) and a ``generation`` health check. Idempotent and cheap: no model,
embedder or table is touched until first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipelines.generation.media_access import MediaAccess
from pipelines.generation.service import GenerationService
from pipelines.generation.settings import GenerationSettings
from pipelines.plugins import installed
from ranking.filters.cameo_consent import CameoConsentFilter
from ranking.filters.generated_label import GeneratedLabelPostFilter
from ranking.filters.rights_optout import RightsOptOutFilter
from ranking.sources.generated import GeneratedForMoodSource

if TYPE_CHECKING:
    from pipelines.engine import Engine

logger = logging.getLogger(__name__)


def generation_of(engine: Engine) -> GenerationService:
    """The engine's generation service, installing it on first use."""
    svc: GenerationService = installed(engine, "generation", install)
    return svc


def media_access_of(engine: Engine) -> MediaAccess:
    """Who may fetch generated media (installing the generation service on first use)."""
    access: MediaAccess = installed(engine, "media_access", install)
    return access


def install(engine: Engine, settings: GenerationSettings | None = None) -> None:
    """Engine extension hook (``pipelines.engine.EXTENSIONS``)."""
    svc: GenerationService | None = getattr(engine, "generation", None)
    if svc is None:
        svc = GenerationService(engine, settings)
        engine.generation = svc  # type: ignore[attr-defined]
    access: MediaAccess | None = getattr(engine, "media_access", None)
    if access is None:
        access = MediaAccess(engine.media_key, engine.state, svc.consents, svc.media_url)
        engine.media_access = access  # type: ignore[attr-defined]
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
        deps.extra_post_filters.append(GeneratedLabelPostFilter(deps.state, access.url))
    engine.health_checks["generation"] = svc.health
    engine.rebuild_products()
    if "following_only" in engine.products:
        from ranking.products.following_only import build_following_only_feed

        engine.products["following_only"] = build_following_only_feed(engine.deps)
    logger.info("generation installed (model %s)", s.model or "not configured")
