"""The social graph: who follows whom, and who blocked or muted whom.

Rebuilt from the store's ``follows`` and ``blocks`` tables plus the follow events of the log;
updated from committed follow events by :meth:`apply_events` and by the write path
(:meth:`add_follows`, :meth:`remove_follow`, :meth:`add_blocks`).
"""

from __future__ import annotations

import threading
from collections import defaultdict

import polars as pl

from ranking.state.events import EventBatch
from storage.store import Store


class SocialGraph:
    """Follow edges in both directions and the blocked users of each user."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self.following: dict[int, set[int]] = defaultdict(set)
        self.followers: dict[int, set[int]] = defaultdict(set)
        self.blocked: dict[int, set[int]] = defaultdict(set)

    def load(self, store: Store, *, events: bool = True) -> None:
        """Add the store's follows and blocks and (with ``events``) the log's follow events;
        on an empty graph this rebuilds it."""
        self.add_follows(store.query("SELECT follower_id, followee_id FROM follows"))
        self.add_blocks(store.query("SELECT user_id, target_id, kind FROM blocks"))
        if events:
            rows = store.query(
                "SELECT user_id, target_user_id FROM events "
                "WHERE event_type = 'follow' AND target_user_id IS NOT NULL ORDER BY ts"
            ).rows()
            self.apply_events(EventBatch.without_clips([(int(u), int(t)) for u, t in rows]))

    def add_follows(self, follows: pl.DataFrame) -> None:
        """Add directed follow edges."""
        with self.lock:
            for a, b in zip(
                follows["follower_id"].to_list(), follows["followee_id"].to_list(), strict=True
            ):
                self.following[a].add(b)
                self.followers[b].add(a)

    def remove_follow(self, follower_id: int, followee_id: int) -> None:
        """Remove one follow edge."""
        with self.lock:
            self.following[follower_id].discard(followee_id)
            self.followers[followee_id].discard(follower_id)

    def add_blocks(self, blocks: pl.DataFrame) -> None:
        """Add blocks and mutes (both hide the target's clips from the user)."""
        kinds = blocks["kind"].to_list() if "kind" in blocks.columns else ["block"] * blocks.height
        with self.lock:
            for u, t, k in zip(
                blocks["user_id"].to_list(), blocks["target_id"].to_list(), kinds, strict=True
            ):
                self.blocked[u].add(t)
                if k == "block":  # a block works both ways; a mute only hides the target
                    self.blocked[t].add(u)

    def apply_events(self, batch: EventBatch) -> None:
        """Add the edges of the batch's follow events."""
        if not batch.follows:
            return
        with self.lock:
            for u, t in batch.follows:
                self.following[u].add(t)
                self.followers[t].add(u)

    def friends(self, user_id: int) -> set[int]:
        """Mutual follows."""
        out = self.following.get(user_id)
        if not out:
            return set()
        return {f for f in out if user_id in self.following.get(f, ())}

    def forget_user(self, user_id: int) -> None:
        """Drop the user's edges in both directions and their blocks either way."""
        with self.lock:
            for other in self.following.pop(user_id, set()):
                self.followers.get(other, set()).discard(user_id)
            for other in self.followers.pop(user_id, set()):
                self.following.get(other, set()).discard(user_id)
            for other in self.blocked.pop(user_id, set()):
                self.blocked.get(other, set()).discard(user_id)
            for blocked in self.blocked.values():
                blocked.discard(user_id)
