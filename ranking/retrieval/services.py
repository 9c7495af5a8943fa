"""Collaborative retrieval's serving state: the learned user vectors and the model version.

The engine builds it with :func:`build_collab` and keeps it as ``engine.collab``; the home
feed's :class:`~ranking.sources.collab.CollabSource` reads its user vectors, the ``collab`` job
(:mod:`pipelines.serving.jobs.collab`) writes them. Cheap: nothing is read from the store
until the first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ranking.retrieval.settings import COLLAB_SPACE, CollabSettings
from ranking.retrieval.user_vectors import UserVectorCache
from storage.store import Store


@dataclass
class CollabServices:
    """Collaborative retrieval state of one engine (``engine.collab``)."""

    settings: CollabSettings
    users: UserVectorCache
    model_version: str | None = None

    def forget_user(self, user_id: int) -> None:
        """Drop an erased user's learned vector from memory (erasure calls this; the store's
        rows are erased with the user's other rows)."""
        self.users.forget(user_id)

    def health(self) -> dict[str, Any]:
        """Health check: how many users have a learned vector, and the model version."""
        return {"users_with_vectors": len(self.users), "model_version": self.model_version}


def build_collab(store: Store, settings: CollabSettings) -> CollabServices:
    """The collab services over a store (the user-vector cache fills on first use)."""
    return CollabServices(settings=settings, users=UserVectorCache(store, COLLAB_SPACE))
