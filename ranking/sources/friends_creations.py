"""Candidate source: clips a friend appears in (cameos) and remixes of friends' clips."""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
import polars as pl

from ranking.pipeline import FeedQuery
from ranking.sources._util import rows_to_candidates
from ranking.state import FeedState


class FriendsCreationsSource:
    """The newest clips where a friend (a mutual follow) appears, then the newest remixes of a
    friend's clip, skipping clips the user has seen; at most ``limit``. Who may see a cameo is
    the cameo consent filter's decision (the same pipeline removes a clip whose person does
    not let this viewer see it). Reads memory: two inverted indexes (person shown -> clips,
    author of the remixed clip -> remixes), extended as clips are added (clips are only
    appended; an erased clip's cameos are emptied and its id no longer resolves)."""

    name = "friends_creations"
    runs_inline = True  # memory only: run in the request thread (see CandidateSource)

    def __init__(self, state: FeedState, *, limit: int = 100, timeout_s: float = 0.2) -> None:
        self.state = state
        self.limit = limit
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._upto = 0
        self._cameo_rows: dict[int, list[int]] = defaultdict(list)
        self._remix_rows: dict[int, list[int]] = defaultdict(list)

    def _extend(self) -> None:
        st = self.state
        n = len(st.catalogue.item_ids)
        if self._upto >= n:
            return
        with st.lock:
            for r in range(self._upto, n):
                for person in st.catalogue.cameos[r]:
                    self._cameo_rows[int(person)].append(r)
            parents = st.catalogue.remix_of[self._upto : n]
            has = np.flatnonzero(parents >= 0)
            if has.size:
                prow = st.catalogue.rows(parents[has])
                ok = prow >= 0
                for r, a in zip(
                    (has[ok] + self._upto).tolist(),
                    st.catalogue.author[prow[ok]].tolist(),
                    strict=True,
                ):
                    self._remix_rows[int(a)].append(int(r))
            self._upto = n

    def fetch(self, query: FeedQuery) -> pl.DataFrame:
        """Return friends' cameos (score 1) and remixes of friends' clips (score 0.8)."""
        st = self.state
        friends = query.context.friends
        empty = rows_to_candidates(st, np.zeros(0, dtype=np.int64), np.zeros(0))
        if not friends:
            return empty
        with self._lock:
            self._extend()
            cameo = [r for f in friends for r in self._cameo_rows.get(f, ())]
            remix = [r for f in friends for r in self._remix_rows.get(f, ())]
        seen = query.context.seen
        uid = query.user_id
        picked: dict[int, float] = {}
        for rows, score in ((cameo, 1.0), (remix, 0.8)):
            if not rows:
                continue
            r = np.unique(np.asarray(rows, dtype=np.int64))
            r = r[np.argsort(-st.catalogue.created[r], kind="stable")]
            for x in r.tolist():
                if len(picked) >= self.limit:
                    break
                item = int(st.catalogue.item_ids[x])
                if x in picked or item in seen or int(st.catalogue.author[x]) == uid:
                    continue
                picked[x] = score
        if not picked:
            return empty
        rows_arr = np.fromiter(picked, np.int64, len(picked))
        return rows_to_candidates(st, rows_arr, np.fromiter(picked.values(), np.float64))
