"""What the engine thinks a user likes, in words, and "more / less / never" on each.

Names come from the topics and hashtags of the clips in the user's engagement history
(weighted like the user vector: by engagement strength, decayed by age); each name's weight
mixes its share of that history with the cosine between the user vector and the name's
embedding. Marking a name writes a standing control (:class:`steering.controls.ControlsService`).

Interests follow the person's data controls (:class:`~ranking.signals.SignalGate`): with
interaction history off nothing is inferred (only the person's own rules are listed), and with
watch time off long views do not count.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from features.embedding import TextEmbedder
from ranking.history import decayed_history, taste_vector
from ranking.signals import SignalGate
from ranking.state import FeedState
from steering.controls import Controls, ControlsError, ControlsService

ACTIONS = {"more": "more_of", "less": "less_of", "never": "never_show"}


@dataclass
class Interest:
    """One named interest: its weight in [0, 1], how it was found and the user's own rule."""

    name: str
    weight: float
    history_share: float
    vector_cosine: float
    rule: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class InterestService:
    """Lists a user's interests and applies more / less / never to one of them.

    Parameters
    ----------
    state
        The serving state (histories, user vectors, clip topics and hashtags).
    controls
        Where more / less / never are written.
    embedder
        Returns the cached text embedder (names are embedded once each).
    """

    def __init__(
        self, state: FeedState, controls: ControlsService, embedder: Callable[[], TextEmbedder]
    ) -> None:
        self.state = state
        self.controls = controls
        self._embedder = embedder

    def list(
        self,
        user_id: int,
        *,
        k: int = 20,
        now: float | None = None,
        signals: SignalGate | None = None,
    ) -> list[Interest]:
        """The user's top ``k`` interests, strongest first, from the history ``signals``
        allow (default: all of it)."""
        st = self.state
        now = now or time.time()
        gate = signals or SignalGate()
        shares: dict[str, float] = defaultdict(float)
        with st.lock:
            rows, weights = decayed_history(st, user_id, now, gate)
            for r, w in zip(rows.tolist(), weights.tolist(), strict=True):
                names = list(
                    dict.fromkeys(
                        x.lower() for x in (*st.catalogue.topics[r], *st.catalogue.hashtags[r])
                    )
                )
                for name in names:
                    shares[name] += w / len(names)
        ctrl = self.controls.get(user_id)
        total = sum(shares.values()) or 1.0
        names = sorted(shares, key=lambda x: -shares[x])[: max(k * 3, 30)]
        for rule_name in (*ctrl.more_of, *ctrl.less_of, *ctrl.never_show):
            if rule_name not in names:
                names.append(rule_name)
        if not names:
            return []
        uvec = taste_vector(st, user_id, now, gate)
        if uvec is not None:
            emb = self._embedder()
            cos = np.asarray([float(emb.embed_one(x) @ uvec) for x in names])
        else:
            cos = np.zeros(len(names))
        out = []
        for name, c in zip(names, cos.tolist(), strict=True):
            share = shares.get(name, 0.0) / total
            out.append(
                Interest(
                    name=name,
                    weight=round(0.6 * min(1.0, share * 3.0) + 0.4 * max(c, 0.0), 4),
                    history_share=round(share, 4),
                    vector_cosine=round(c, 4),
                    rule=_rule_of(ctrl, name),
                )
            )
        out.sort(key=lambda i: -i.weight)
        ruled = [i for i in out[k:] if i.rule]
        return out[:k] + ruled

    def mark(self, user_id: int, name: str, action: str) -> Controls:
        """Apply ``more``, ``less`` or ``never`` to an interest (a standing control).

        Raises
        ------
        ControlsError
            An unknown action.
        """
        kind = ACTIONS.get(action)
        if kind is None:
            msg = f"unknown action {action!r}; valid: {', '.join(ACTIONS)}"
            raise ControlsError(msg)
        return self.controls.add_rule(user_id, kind, name)


def _rule_of(ctrl: Controls, name: str) -> str | None:
    for action, field in ACTIONS.items():
        if name in getattr(ctrl, field):
            return action
    return None
