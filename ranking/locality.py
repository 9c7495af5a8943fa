"""Where clips were made, city by city: the catalogue side of the location signal.

Clips carry a ``city`` (``clips.city``, normalised by :func:`ranking.signals.normalise_city`;
NULL when unknown). :class:`ClipCities` holds them in memory for the request path as sorted
item ids and small integer city codes, so the locality hydrator matches a page's candidates
with one vectorised lookup. The set of cities the catalogue holds is also the bounded set a
person's city is chosen from (:meth:`ClipCities.known`): a city no clip comes from could not
favour anything.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import polars as pl

from ranking.signals import CityError, normalise_city
from storage.store import Store

logger = logging.getLogger(__name__)

NO_CITY = -1


class ClipCities:
    """Item id -> city for clips that carry one (others have none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = np.zeros(0, dtype=np.int64)
        self._codes = np.zeros(0, dtype=np.int32)
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        # The known set, cached: a feed request with ?city= checks it (a scan of a million
        # codes is milliseconds); cleared whenever the held cities change.
        self._known: frozenset[str] | None = None

    @classmethod
    def load(cls, store: Store) -> ClipCities:
        """Read every clip's city from the store."""
        out = cls()
        out.replace(store.query("SELECT item_id, city FROM clips WHERE city IS NOT NULL"))
        return out

    def reload(self, store: Store) -> None:
        """Read the cities again (after an erasure deleted clips)."""
        self.replace(store.query("SELECT item_id, city FROM clips WHERE city IS NOT NULL"))

    def replace(self, frame: pl.DataFrame) -> None:
        """Hold exactly the ``item_id, city`` rows of ``frame``."""
        with self._lock:
            self._ids = np.zeros(0, dtype=np.int64)
            self._codes = np.zeros(0, dtype=np.int32)
            self._known = None
            self._merge(frame)

    def add(self, frame: pl.DataFrame) -> None:
        """Add or replace the cities of some clips (frames without a ``city`` column add
        nothing)."""
        if "city" not in frame.columns or frame.height == 0:
            return
        with self._lock:
            self._merge(frame)

    def _merge(self, frame: pl.DataFrame) -> None:
        if "city" not in frame.columns or frame.height == 0:
            return
        rows = frame.select(pl.col("item_id").cast(pl.Int64), pl.col("city").cast(pl.String))
        rows = rows.filter(pl.col("city").is_not_null())
        # Each distinct value is normalised once (a million clips share a few hundred cities).
        code_of_raw: dict[str, int] = {}
        bad = 0
        for raw in rows["city"].unique().to_list():
            if not raw.strip():
                continue
            try:
                city = normalise_city(raw)
            except CityError:
                bad += 1  # a stored value finer than a city is never held in memory
                continue
            code = self._code_of.get(city)
            if code is None:
                code = self._code_of[city] = len(self._names)
                self._names.append(city)
            code_of_raw[raw] = code
        if bad:
            logger.warning("clip cities: %d distinct values are not city names; ignored", bad)
        codes_s = rows["city"].replace_strict(code_of_raw, default=NO_CITY, return_dtype=pl.Int32)
        ok = (codes_s != NO_CITY).to_numpy()
        new_ids = rows["item_id"].to_numpy()[ok]
        new_codes = codes_s.to_numpy()[ok].astype(np.int32)
        keep = ~np.isin(self._ids, frame["item_id"].cast(pl.Int64).to_numpy())
        all_ids = np.concatenate([self._ids[keep], new_ids])
        all_codes = np.concatenate([self._codes[keep], new_codes])
        order = np.argsort(all_ids, kind="stable")
        self._ids, self._codes = all_ids[order], all_codes[order]
        self._known = None

    def codes(self, item_ids: np.ndarray) -> np.ndarray:
        """City code of each clip (:data:`NO_CITY` where it has none)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        held_ids, held_codes = self._ids, self._codes
        if ids.size == 0 or held_ids.size == 0:
            return np.full(ids.shape, NO_CITY, dtype=np.int32)
        pos = np.minimum(np.searchsorted(held_ids, ids), held_ids.size - 1)
        return np.where(held_ids[pos] == ids, held_codes[pos], NO_CITY).astype(np.int32)

    def same_city(self, item_ids: np.ndarray, city: str | None) -> np.ndarray:
        """1.0 where a clip was made in ``city`` (normalised), else 0.0."""
        code = self._code_of.get(city) if city is not None else None
        if code is None:
            return np.zeros(len(item_ids))
        return np.asarray(self.codes(item_ids) == code, dtype=np.float64)

    def city_of(self, item_id: int) -> str | None:
        """One clip's city (``None`` when it carries none)."""
        code = int(self.codes(np.asarray([item_id]))[0])
        return self._names[code] if code != NO_CITY else None

    def known(self) -> frozenset[str]:
        """The cities the catalogue's clips come from (the bounded set a person picks from)."""
        known = self._known
        if known is None:
            known = frozenset(self._names[c] for c in np.unique(self._codes).tolist())
            self._known = known
        return known
