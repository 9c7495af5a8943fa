"""Concept scores: how strongly each clip in the catalogue is about a short text ("cooking").

Titles alone often do not say what a clip is about, so plain cosine between a concept and a
caption finds only the obvious clips. :class:`ConceptIndex` expands a concept in three steps
and calibrates the result over the whole catalogue:

1. **Query expansion (Rocchio / pseudo-relevance feedback).** The concept's embedding plus a
   word match on topics, hashtags and caption words picks the top ``prf_k`` clips; their
   centroid is added to the query, and every clip is scored by cosine to the expanded query.
   Then a ridge regression on the caption vectors, trained with the top 1% of that ranking as
   positives and the bottom half as negatives, rescores every clip (a second round of
   feedback, with a model instead of a centroid: +4 points of precision@100 and +8 of recall
   at z > 2 on the benchmark's tuning concepts).
2. **Hashtag co-occurrence.** Each hashtag and topic gets the shrunk mean score of the clips
   that carry it; a clip inherits the best score of its tags (``#comics recommended`` spreads
   from the clips that name "anime" to those that do not).
3. **Propagation over the caption kNN graph.** The score is smoothed with the mean score of
   each clip's ``graph_k`` nearest captions.

The result is a robust z-score over the catalogue (median 0, scaled by the MAD), so one
threshold means the same for every concept: that is the calibration filters and scorers use.
Scores are cached per concept text, so a mood costs its expansion once, at creation.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from features.embedding import TextEmbedder
from ranking.state import FeedState
from steering.knn import knn_graph, knn_rows
from steering.vocabulary import CatalogueVocabulary, count_words

logger = logging.getLogger(__name__)

_WORD_RE = re.compile(r"[^\W_]+")
# Words that never stand alone as a concept when a phrase is scored word by word.
_COMPOSE_SKIP = frozenset(
    ["the", "and", "for", "with", "from", "about", "that", "this", "some", "any", "all", "of"]
)


class ConceptSettings(BaseModel):
    """Knobs of concept expansion (tuned on the tuning prompts of the steering benchmark)."""

    model_config = ConfigDict(extra="forbid")

    prf_k: int = Field(default=40, ge=1)
    prf_beta: float = Field(default=1.0, ge=0.0)
    prf_model: bool = True
    prf_model_pos_frac: float = Field(default=0.01, gt=0.0, le=0.5)
    prf_model_min_pos: int = Field(default=20, ge=1)
    prf_model_max_neg: int = Field(default=1000, ge=1)
    prf_model_ridge: float = Field(default=3.0, gt=0.0)
    lexical_tag_bonus: float = Field(default=0.25, ge=0.0)
    lexical_caption_bonus: float = Field(default=0.12, ge=0.0)
    topic_tag_max_words: int = Field(default=2, ge=1)
    tag_weight: float = Field(default=0.6, ge=0.0)
    tag_shrink: float = Field(default=5.0, ge=0.0)
    graph_k: int = Field(default=10, ge=1)
    graph_alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    graph_max_rows: int = Field(default=2_000_000, ge=0)
    graph_exact_max_rows: int = Field(default=30_000, ge=0)
    cache_size: int = Field(default=512, ge=1)
    top_k: int = Field(default=300, ge=1)
    # Phrases of several words ("funny animals") are also scored word by word and blended
    # with the weakest word (a soft AND): a whole-phrase embedding leans on its most common
    # word and finds everything "funny". 0 turns it off. Tuned on the benchmark's tuning
    # set: compliance@10 0.684 at 0, 0.718 at 0.5, 0.701 at 0.75.
    compose_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    compose_max_words: int = Field(default=4, ge=2)
    # A negation's extent (:meth:`ConceptIndex.negated`): the clips that clearly match it
    # (z above ``negation_seed_z`` or naming it); then, ``negation_rounds`` times, every clip
    # carrying a tag of which at least ``negation_tag_share`` of the clips are in the extent
    # (shrunk by ``negation_tag_shrink`` clips; tags of ``negation_tag_min_clips`` or more)
    # and every clip whose caption neighbours are at least ``negation_knn_share`` in it.
    # Tuned on the benchmark's tuning
    # negations (docs/benchmarks.md): over the catalogue the negated kinds are covered 0.54 ->
    # 0.85 for 6% -> 21% of the other clips (one round at share 0.3 and vote 0.5: 0.76 for
    # 12%; share 0.25 and vote 0.5: 0.89 for 27%, flooding "movies" into most anime).
    negation_seed_z: float = 1.5
    negation_tag_share: float = Field(default=0.25, gt=0.0, le=1.0)
    negation_tag_shrink: float = Field(default=2.0, ge=0.0)
    negation_tag_min_clips: int = Field(default=2, ge=1)
    negation_knn_share: float = Field(default=0.6, gt=0.0, le=1.0)
    negation_extent: bool = True
    negation_rounds: int = Field(default=2, ge=0)


def word_stem(word: str) -> str:
    """A crude English stem: lower case, trailing plural ``s``/``es`` removed."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def stems(text: str) -> list[str]:
    """Stemmed words of a text."""
    return [word_stem(w) for w in _WORD_RE.findall(text.lower())]


@dataclass(frozen=True)
class ConceptScores:
    """Calibrated scores of one concept over the catalogue rows known when it was computed.

    ``z`` is a robust z-score (0 = a typical clip; 3 = far above typical). ``vector`` is the
    expanded unit query vector (for ANN search). ``lexical`` marks rows whose short tags (topics,
    hashtags of at most ``topic_tag_max_words`` words) and caption words hold every word of the
    concept (words of three letters or more, stemmed). ``extent`` is set on a negation's scores
    only: the rows the negation covers (:meth:`ConceptIndex.negated`).
    """

    text: str
    vector: np.ndarray
    z: np.ndarray
    lexical: np.ndarray
    n_rows: int
    top_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    extent: np.ndarray | None = None

    def at(self, rows: np.ndarray) -> np.ndarray:
        """Scores of the given rows; rows added after the computation score 0."""
        rows = np.asarray(rows, dtype=np.int64)
        ok = (rows >= 0) & (rows < self.n_rows)
        out = np.zeros(len(rows), dtype=np.float64)
        out[ok] = self.z[rows[ok]]
        return out

    def lexical_at(self, rows: np.ndarray) -> np.ndarray:
        """Word-match flags of the given rows."""
        rows = np.asarray(rows, dtype=np.int64)
        ok = (rows >= 0) & (rows < self.n_rows)
        out = np.zeros(len(rows), dtype=bool)
        out[ok] = self.lexical[rows[ok]]
        return out

    def extent_at(self, rows: np.ndarray) -> np.ndarray:
        """Whether the given rows are in a negated concept's extent
        (:meth:`ConceptIndex.negated`); all false for scores without one."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=bool)
        if self.extent is None:
            return out
        ok = (rows >= 0) & (rows < self.n_rows)
        out[ok] = self.extent[rows[ok]]
        return out


class _Catalogue:
    """Per-catalogue structures: tag incidence, word sets and the caption kNN graph.

    Given the ``previous`` catalogue of the same state (clips are only ever appended), the
    graph rows of the clips it already held are kept and only the new clips' neighbours are
    searched (exactly, against every clip): a rebuild after adding clips costs
    ``new x catalogue`` dot products, not a whole graph. Old clips do not gain the new ones
    as neighbours until a full build (a restart).
    """

    def __init__(
        self, state: FeedState, settings: ConceptSettings, previous: _Catalogue | None = None
    ) -> None:
        t0 = time.perf_counter()
        with state.lock:
            self.n = len(state.catalogue.item_ids)
            self.item_ids = state.catalogue.item_ids[: self.n].copy()
            # A view, not a copy (1.5 GB at 1M clips): adding clips reallocates the state's
            # matrix and leaves this one intact; a re-embedded caption shows up here at once.
            self.vectors = state.catalogue.vectors[: self.n]
            self.has_vector = state.catalogue.has_vector[: self.n].copy()
            tag_keys = [
                (*state.catalogue.topics[r], *state.catalogue.hashtags[r]) for r in range(self.n)
            ]
            captions = list(state.catalogue.captions[: self.n])
        vocab: dict[str, int] = {}
        ri: list[int] = []
        ci: list[int] = []
        self.tag_words: list[frozenset[str]] = []
        self.caption_words: list[frozenset[str]] = []
        # Clips share captions and tag lists (a million clips, a few thousand distinct): one
        # read-only word set per distinct one, not one per clip (gigabytes of sets and stems).
        by_tags: dict[tuple[str, ...], tuple[frozenset[str], list[int]]] = {}
        by_caption: dict[str, frozenset[str]] = {}
        for r, key in enumerate(tag_keys):
            hit = by_tags.get(key)
            if hit is None:
                words: set[str] = set()
                cols: list[int] = []
                for t in dict.fromkeys(x.lower() for x in key):
                    cols.append(vocab.setdefault(t, len(vocab)))
                    # Only short tags name a topic; a word inside a long tag ("midsummer
                    # fantasy night song", an event of one game) counts as a caption word.
                    tag_stems = stems(t)
                    if len(tag_stems) <= settings.topic_tag_max_words:
                        words.update(tag_stems)
                hit = by_tags[key] = (frozenset(words), cols)
            ri.extend([r] * len(hit[1]))
            ci.extend(hit[1])
            self.tag_words.append(hit[0])
            caption = captions[r] or ""
            cap_words = by_caption.get(caption)
            if cap_words is None:
                cap_words = by_caption[caption] = frozenset(stems(caption))
            self.caption_words.append(cap_words)
        self.tag_matrix = sparse.csr_matrix(
            (np.ones(len(ri), dtype=np.float32), (ri, ci)), shape=(self.n, max(len(vocab), 1))
        )
        self.tag_counts = np.asarray(self.tag_matrix.sum(axis=0)).ravel()
        self.neighbours = (
            self._knn(settings, previous) if self.n <= settings.graph_max_rows else None
        )
        # The words of captions, topics and hashtags (typo correction); built on first use.
        self.vocabulary: CatalogueVocabulary | None = None
        logger.info(
            "concept catalogue built: rows=%d tags=%d graph=%s ms=%.0f",
            self.n,
            len(vocab),
            self.neighbours is not None,
            (time.perf_counter() - t0) * 1e3,
        )

    def _knn(self, settings: ConceptSettings, previous: _Catalogue | None) -> np.ndarray:
        k = min(settings.graph_k, max(self.n - 1, 1))
        old = previous.neighbours if previous is not None else None
        if (
            previous is not None
            and old is not None
            and old.shape[1] == k
            and 0 < previous.n <= self.n
            and np.array_equal(previous.item_ids, self.item_ids[: previous.n])
        ):
            new = knn_rows(self.vectors, np.arange(previous.n, self.n), k)
            return np.concatenate([old, new]) if len(new) else old
        return knn_graph(self.vectors, k, exact_max_rows=settings.graph_exact_max_rows)


class ConceptIndex:
    """Scores concepts over the catalogue (see the module docstring); thread safe, cached.

    Parameters
    ----------
    state
        The serving state whose caption vectors, topics and hashtags are read.
    embedder
        Returns the text embedder (called lazily so nothing loads until a concept is scored).
    settings
        Expansion knobs.
    """

    def __init__(
        self,
        state: FeedState,
        embedder: Callable[[], TextEmbedder],
        *,
        settings: ConceptSettings | None = None,
    ) -> None:
        self.state = state
        self._embedder = embedder
        self.settings = settings or ConceptSettings()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._rebuilding = False
        self._warmed = False
        self._catalogue: _Catalogue | None = None
        self._cache: OrderedDict[str, ConceptScores] = OrderedDict()
        self._masks: OrderedDict[str, np.ndarray] = OrderedDict()

    def word_mask(self, phrase: str) -> np.ndarray:
        """Catalogue rows whose topics, hashtags or caption words hold every word of ``phrase``
        (stemmed; words of one letter ignored). Cached per phrase, so a rule costs the request
        one lookup instead of a scan; an empty phrase matches nothing."""
        key = " ".join(phrase.lower().split())
        cat = self.catalogue()
        with self._lock:
            hit = self._masks.get(key)
            if hit is not None and len(hit) == cat.n:
                self._masks.move_to_end(key)
                return hit
        words = {w for w in stems(key) if len(w) > 1}
        if words:
            mask = np.fromiter(
                (words <= (t | c) for t, c in zip(cat.tag_words, cat.caption_words, strict=True)),
                bool,
                cat.n,
            )
        else:
            mask = np.zeros(cat.n, dtype=bool)
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > self.settings.cache_size:
                self._masks.popitem(last=False)
        return mask

    def vocabulary(self) -> CatalogueVocabulary:
        """The catalogue's words with how many clips hold each (for typo correction in
        prompts); built once per catalogue, from distinct captions and tag lists."""
        cat = self.catalogue()
        vocab = cat.vocabulary
        if vocab is not None:
            return vocab
        t0 = time.perf_counter()
        st = self.state
        texts: Counter[tuple[str, tuple[str, ...], tuple[str, ...]]] = Counter()
        with st.lock:
            for r in range(cat.n):
                texts[
                    (
                        st.catalogue.captions[r] or "",
                        tuple(st.catalogue.topics[r]),
                        tuple(st.catalogue.hashtags[r]),
                    )
                ] += 1
        vocab = CatalogueVocabulary(
            count_words((" ".join((c, *t, *h)), k) for (c, t, h), k in texts.items())
        )
        cat.vocabulary = vocab
        logger.info(
            "catalogue vocabulary built: words=%d ms=%.0f",
            len(vocab),
            (time.perf_counter() - t0) * 1e3,
        )
        return vocab

    def embed(self, text: str) -> np.ndarray:
        """The (cached) unit embedding of a text."""
        return self._embedder().embed_one(text)

    def catalogue(self) -> _Catalogue:
        """The per-catalogue structures, rebuilt when clips were added since the last build.

        The build reads the whole catalogue and builds a kNN graph over every caption (exact up
        to ``graph_exact_max_rows``, IVF above), and this is called on the page path (moods,
        standing rules). So only the very first build is waited for; once a catalogue exists, a
        stale one keeps serving (clips added since get no concept score yet) while one
        background thread rebuilds it.
        """
        with self._lock:
            cat = self._catalogue
            if cat is not None:
                if cat.n != len(self.state.catalogue.item_ids) and not self._rebuilding:
                    self._rebuilding = True
                    threading.Thread(
                        target=self._rebuild, name="concept-catalogue", daemon=True
                    ).start()
                return cat
        with self._build_lock:  # one first build; concurrent callers wait for it
            with self._lock:
                if self._catalogue is not None:
                    return self._catalogue
            return self._build()

    def _build(self) -> _Catalogue:
        cat = _Catalogue(self.state, self.settings, previous=self._catalogue)
        with self._lock:
            self._catalogue = cat
            self._cache.clear()
            self._masks.clear()
        return cat

    def _rebuild(self) -> None:
        try:
            with self._build_lock:
                self._build()
        except Exception:
            logger.exception("concept catalogue rebuild failed; the previous one keeps serving")
        finally:
            with self._lock:
                self._rebuilding = False

    def status(self) -> str:
        """``ready``, ``building`` (no catalogue yet: a mood or rule waits for it), ``stale``
        (clips were added; the old one serves while one is rebuilt) or ``empty`` (no clips)."""
        with self._lock:
            cat = self._catalogue
            if cat is None:
                return "empty" if len(self.state.catalogue.item_ids) == 0 else "building"
            return "ready" if cat.n == len(self.state.catalogue.item_ids) else "stale"

    def warm(self) -> None:
        """Build what the first mood or rule would otherwise wait for: the catalogue, its
        vocabulary (typo correction of prompts) and the embedding model, with one text embedded
        (the model's first call is slower than the rest)."""
        if len(self.state.catalogue.item_ids) == 0:
            return
        t0 = time.perf_counter()
        self.catalogue()
        self.vocabulary()
        self.embed("warm up")
        self._warmed = True
        logger.info("steering warmed ms=%.0f", (time.perf_counter() - t0) * 1e3)

    def warm_async(self) -> threading.Thread | None:
        """:meth:`warm` in a background thread (the server does this at start-up, so no prompt
        or page waits for it); ``None`` when there are no clips or it was done."""
        with self._lock:
            if self._warmed or len(self.state.catalogue.item_ids) == 0:
                return None
        t = threading.Thread(target=self._warm_logged, name="concept-catalogue-warm", daemon=True)
        t.start()
        return t

    def _warm_logged(self) -> None:
        try:
            self.warm()
        except Exception:  # the first mood then builds what is missing, or says why it cannot
            logger.exception("warming steering at start-up failed")

    def scores(self, text: str, *, compose: bool = True) -> ConceptScores:
        """Calibrated scores of ``text`` over every clip (cached per text and catalogue).

        ``compose=False`` scores a phrase of several words as a whole, without the soft AND of
        its words: what negations use, since "no video games" means no games at all (a soft
        AND with "video" would narrow what is removed).
        """
        key = text.strip().lower()
        cache_key = key if compose else f"{key}\x00whole"
        cat = self.catalogue()
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None and hit.n_rows == cat.n:
                self._cache.move_to_end(cache_key)
                return hit
        t0 = time.perf_counter()
        out = self._compute(key, cat, compose=compose)
        with self._lock:
            self._cache[cache_key] = out
            while len(self._cache) > self.settings.cache_size:
                self._cache.popitem(last=False)
        # Not the concept's text: it comes from a user's mood.
        logger.debug("concept scored in %.1f ms", (time.perf_counter() - t0) * 1e3)
        return out

    def negated(self, text: str) -> ConceptScores:
        """Scores of ``text`` as a negation ("no games"): the whole phrase's scores
        (``compose=False``) with its ``extent``, the rows the negation covers.

        A broad concept is named by few of its clips: most game clips are titled with a
        character or an event, and score near a typical clip. The extent reaches them in the
        engine's own terms: it starts from the clips that clearly match (z above
        ``negation_seed_z``, or naming it); a tag whose clips are largely in it brings in all
        its clips, and a clip whose nearest captions are mostly in it joins it
        (``ConceptSettings.negation_*``). ``z`` stays the concept's own score, so "X but not Y"
        can still keep what is more like X. Cached like :meth:`scores`.
        """
        base = self.scores(text, compose=False)
        s = self.settings
        if not s.negation_extent or base.n_rows == 0:
            return base
        key = f"{text.strip().lower()}\x00negated"
        cat = self.catalogue()
        if base.n_rows != cat.n:  # the catalogue moved on meanwhile
            return base
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit.n_rows == cat.n:
                self._cache.move_to_end(key)
                return hit
        out = replace(base, extent=self._extent(base, cat))
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self.settings.cache_size:
                self._cache.popitem(last=False)
        return out

    def _extent(self, base: ConceptScores, cat: _Catalogue) -> np.ndarray:
        """Rows in a negated concept's extent (see :meth:`negated`)."""
        s = self.settings
        extent = (base.z > s.negation_seed_z) | base.lexical
        for _ in range(s.negation_rounds):
            grown = extent.copy()
            if cat.tag_matrix.nnz:
                share = (cat.tag_matrix.T @ extent.astype(np.float64)) / (
                    cat.tag_counts + s.negation_tag_shrink
                )
                marked = (share >= s.negation_tag_share) & (
                    cat.tag_counts >= s.negation_tag_min_clips
                )
                grown |= _row_max(cat.tag_matrix, marked.astype(np.float64)) > 0
            if cat.neighbours is not None:
                grown |= grown[cat.neighbours].mean(axis=1) >= s.negation_knn_share
            extent = grown
        return np.asarray(extent)

    def _compose(self, text: str, z: np.ndarray, n: int) -> np.ndarray:
        """Blend a phrase's scores with the minimum of its words' scores (a soft AND), so a
        clip must be about every word: "funny animals" is animals that are funny, not anything
        funny. Words are scored (and cached) as concepts of their own."""
        s = self.settings
        words = [w for w in dict.fromkeys(_WORD_RE.findall(text)) if len(w) > 2]
        words = [w for w in words if w not in _COMPOSE_SKIP]
        if s.compose_weight <= 0 or not 2 <= len(words) <= s.compose_max_words:
            return z
        parts = [self.scores(w) for w in words]
        if any(p.n_rows != n for p in parts):  # the catalogue moved on meanwhile
            return z
        weakest = np.min(np.vstack([p.z for p in parts]), axis=0)
        return _robust_z((1.0 - s.compose_weight) * z + s.compose_weight * weakest)

    def _compute(self, text: str, cat: _Catalogue, *, compose: bool = True) -> ConceptScores:
        s = self.settings
        q = self.embed(text).astype(np.float32)
        n = cat.n
        if n == 0:
            empty = np.zeros(0)
            return ConceptScores(text, q, empty, np.zeros(0, dtype=bool), 0)
        words = {w for w in stems(text) if len(w) > 2}
        lex_tag = np.fromiter((bool(words & t) for t in cat.tag_words), bool, n)
        lex_cap = np.fromiter((bool(words & c) for c in cat.caption_words), bool, n)
        # The flag other components trust as "names the concept" needs every word ("cute
        # animals" is not named by every caption saying "cute"); the bonuses above need one.
        if words:
            lexical = np.fromiter(
                (words <= (t | c) for t, c in zip(cat.tag_words, cat.caption_words, strict=True)),
                bool,
                n,
            )
        else:
            lexical = np.zeros(n, dtype=bool)
        base = cat.vectors @ q
        base = np.where(cat.has_vector, base, 0.0)
        seed = base + s.lexical_tag_bonus * lex_tag + s.lexical_caption_bonus * lex_cap
        k = min(s.prf_k, n)
        top = np.argpartition(-seed, k - 1)[:k]
        centroid = cat.vectors[top].mean(axis=0)
        cn = float(np.linalg.norm(centroid))
        q1 = q + s.prf_beta * (centroid / cn if cn > 0 else centroid)
        q1 = (q1 / max(float(np.linalg.norm(q1)), 1e-9)).astype(np.float32)
        s1 = np.where(cat.has_vector, cat.vectors @ q1, 0.0)
        lex_bonus = s.lexical_tag_bonus * lex_tag + s.lexical_caption_bonus * lex_cap
        s1 = s1 + lex_bonus
        if s.prf_model and n >= 4 * s.prf_model_min_pos:
            s1 = np.where(cat.has_vector, _pseudo_labelled_scores(cat, s1, s), 0.0) + lex_bonus
        z = _robust_z(s1)
        if s.tag_weight > 0 and cat.tag_matrix.nnz:
            tag_mean = (cat.tag_matrix.T @ z) / (cat.tag_counts + s.tag_shrink)
            tag_best = _row_max(cat.tag_matrix, tag_mean)
            z = z + s.tag_weight * np.clip(tag_best, 0.0, None)
        if cat.neighbours is not None and s.graph_alpha > 0:
            z = (1.0 - s.graph_alpha) * z + s.graph_alpha * z[cat.neighbours].mean(axis=1)
        z = _robust_z(z)
        if compose:
            z = self._compose(text, z, n)
        z = z.astype(np.float32)
        k_top = min(s.top_k, n)
        top_rows = np.argpartition(-z, k_top - 1)[:k_top]
        top_rows = top_rows[np.argsort(-z[top_rows])]
        return ConceptScores(text, q1, z, lexical, n, top_rows.astype(np.int64))


def _pseudo_labelled_scores(cat: _Catalogue, s1: np.ndarray, s: ConceptSettings) -> np.ndarray:
    """Pseudo-relevance feedback with a linear model: the top ``prf_model_pos_frac`` clips by
    the expanded query are positives, an even sample of the bottom half negatives; a ridge
    regression on the caption vectors then scores every clip. A centroid describes a concept
    by one direction; the model learns which directions separate it from the rest, which
    finds more of a broad concept ("games") whose titles rarely name it."""
    n = cat.n
    order = np.argsort(-s1)
    n_pos = min(max(int(n * s.prf_model_pos_frac), s.prf_model_min_pos), n // 4)
    bottom = order[n // 2 :]
    neg = bottom[:: max(1, len(bottom) // s.prf_model_max_neg)]
    x = np.vstack([cat.vectors[order[:n_pos]], cat.vectors[neg]]).astype(np.float64)
    y = np.concatenate([np.ones(n_pos), -np.ones(len(neg))])
    w = np.linalg.solve(x.T @ x + s.prf_model_ridge * np.eye(x.shape[1]), x.T @ y)
    out: np.ndarray = cat.vectors @ w.astype(np.float32)
    return out


def _robust_z(x: np.ndarray) -> np.ndarray:
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    if mad <= 1e-9:
        mad = float(np.std(x)) or 1.0
    return (x - med) / mad


def _row_max(m: sparse.csr_matrix, values: np.ndarray) -> np.ndarray:
    """For each row of a 0/1 sparse matrix, the max of ``values`` over its nonzero columns."""
    out = np.zeros(m.shape[0], dtype=np.float64)
    if m.nnz == 0:
        return out
    vals = values[m.indices]
    counts = np.diff(m.indptr)
    nonempty = counts > 0
    out[nonempty] = np.maximum.reduceat(vals, m.indptr[:-1][nonempty])
    return out
