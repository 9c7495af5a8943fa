"""A seeded generator of a plausible demo world: users, clips, a social graph and an event log.

The world is drawn from a small ground-truth model so that recommenders trained on its logs can
be evaluated against what users "really" like:

- every user has latent tastes over 2-4 of :data:`TOPICS` (a Dirichlet draw, shaped by the
  user's community so that friends share tastes) and a preferred energy level in ``[-1, 1]``;
- every clip has a primary (and sometimes a second) topic, a style, a mood (with an energy), a
  quality and an intensity;
- :meth:`World.true_affinity` combines topic fit, energy fit and quality into one number in
  ``[0, 1]``; watch time and every engagement are drawn from it.

The event log imitates what a deployed feed would have logged: sessions of impressions (pages of
ten from the ``following``, ``trending``, ``fresh`` and ``ann`` sources, biased toward followed
authors and preferred topics but with exploration), each followed by a view with watch time and
by likes, comments, shares, remixes, follows, skips, "see less" and reports. Everything is
vectorised with numpy; the default size (2k users, 20k clips, 500k events) builds in a few
seconds on one core.

Example
-------
>>> world = build_world(WorldConfig(n_users=200, n_clips=1000, n_events=20_000, seed=1))
>>> world.events.height <= 20_000
True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_US = 1_000_000
_DAY_US = 86_400 * _US
_PAGE_SIZE = 10
DEFAULT_NOW = datetime(2025, 6, 2, 12, 0, 0)
"""The fixed "now" of a world built without one, so the same seed gives the same world."""


class WorldConfigError(ValueError):
    """A :class:`WorldConfig` whose values cannot describe a world."""


# -- vocabulary ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Topic:
    """A content topic: its hashtags, caption scenes and how intense its clips tend to be.

    ``scenes`` are noun phrases with an action ("sourdough bread rising") that the caption
    templates of :data:`STYLES` wrap; ``mature`` scales how often the topic's clips are rated
    for mature audiences.
    """

    name: str
    hashtags: tuple[str, ...]
    scenes: tuple[str, ...]
    intensity: float
    mature: float = 1.0


@dataclass(frozen=True)
class Style:
    """A video style (tutorial, vlog, ...) and the caption templates that describe it.

    Templates use ``{mood}``, ``{scene}`` and ``{setting}`` placeholders.
    """

    name: str
    templates: tuple[str, ...]
    intensity: float


@dataclass(frozen=True)
class Mood:
    """A mood with its energy in ``[-1, 1]`` (calm is low, hype is high) and its hashtag."""

    name: str
    energy: float
    hashtag: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        "cats",
        ("cats", "kitten", "catlife"),
        (
            "a ginger kitten chasing a laser pointer",
            "a tabby knocking cups off the table",
            "a sleepy maine coon napping in a sunbeam",
            "two rescue cats discovering a cardboard box",
            "a black cat meeting the new puppy",
            "my old cat demanding breakfast at 5am",
            "a kitten learning to climb the curtains",
            "a cat judging my cooking",
        ),
        0.2,
    ),
    Topic(
        "dogs",
        ("dogs", "puppy", "doglife"),
        (
            "a golden retriever puppy seeing snow for the first time",
            "a tiny corgi learning a new trick",
            "a rescue greyhound zooming around the park",
            "two huskies howling along to the radio",
            "an old beagle waiting for dinner",
            "a border collie herding the whole family",
            "a puppy meeting the neighbour's cat",
            "a labrador refusing to leave the lake",
        ),
        0.3,
    ),
    Topic(
        "cooking",
        ("cooking", "recipe", "foodie"),
        (
            "a street vendor pulling noodles by hand",
            "grandma making dumplings from scratch",
            "a home cook making a five-minute pasta",
            "skewers sizzling over charcoal",
            "a ramen chef building the perfect bowl",
            "a one-pan dinner coming together",
            "a line cook plating a three-course dinner",
            "fresh tortillas puffing up on the comal",
        ),
        0.3,
    ),
    Topic(
        "baking",
        ("baking", "sourdough", "bakeday"),
        (
            "sourdough bread rising",
            "croissants puffing up in the oven",
            "cinnamon rolls getting glazed",
            "a three-tier birthday cake getting decorated",
            "lemon tarts cooling on the rack",
            "chocolate chip cookies fresh out of the oven",
            "a baker laminating dough by hand",
            "macarons getting piped one by one",
        ),
        0.15,
    ),
    Topic(
        "travel",
        ("travel", "wanderlust", "travelvlog"),
        (
            "a solo backpacker exploring the back streets of kyoto",
            "a night train crossing the alps",
            "two friends island hopping in greece",
            "a family getting lost in the souks of marrakech",
            "a road trip through patagonia",
            "a food tour of the bangkok night markets",
            "a tiny guesthouse on the lisbon hills",
            "a ferry ride across the fjords",
        ),
        0.35,
    ),
    Topic(
        "nature",
        ("nature", "naturelovers", "wildlife"),
        (
            "a waterfall roaring after the spring melt",
            "the northern lights dancing over a frozen lake",
            "a thunderstorm rolling across the prairie",
            "wildflowers swaying in a mountain meadow",
            "a forest stream trickling over mossy rocks",
            "ocean waves crashing against the cliffs",
            "a fox family playing at dusk",
            "fog drifting through an old pine forest",
        ),
        0.1,
    ),
    Topic(
        "hiking",
        ("hiking", "trail", "mountains"),
        (
            "a hiker reaching the summit of a volcano",
            "a ridge walk above the clouds",
            "a first solo overnight hike",
            "a trail runner crossing a rocky pass",
            "a hut-to-hut trek through the dolomites",
            "a scramble up a granite ridge",
            "a desert canyon hike at first light",
            "a muddy forest trail after the rain",
        ),
        0.35,
    ),
    Topic(
        "gaming",
        ("gaming", "gamer", "speedrun"),
        (
            "a speedrunner chasing a world record",
            "a clutch final round in a battle royale",
            "a cosy farming game harvest day",
            "a retro console getting restored",
            "a boss fight on the hardest difficulty",
            "a pixel-art platformer being built by one person",
            "a tournament crowd losing it over a comeback",
            "a huge medieval castle built block by block",
        ),
        0.75,
    ),
    Topic(
        "football",
        ("football", "soccer", "goals"),
        (
            "a last-minute free kick into the top corner",
            "a sunday league team celebrating a win",
            "a goalkeeper pulling off a triple save",
            "kids practising keepy-uppies in the street",
            "a derby day crowd singing in the rain",
            "a striker's bicycle kick in training",
            "a village pitch under floodlights",
            "a penalty shootout going to sudden death",
        ),
        0.8,
        1.3,
    ),
    Topic(
        "basketball",
        ("basketball", "hoops", "dunk"),
        (
            "a streetball game going down to the wire",
            "a buzzer-beater from half court",
            "a rookie's first dunk in a real game",
            "a pickup game at the neighbourhood court",
            "a point guard's crossover breaking ankles",
            "a wheelchair basketball final",
            "a trick-shot session in the school gym",
            "a three-point contest with my friends",
        ),
        0.8,
    ),
    Topic(
        "music",
        ("music", "livemusic", "newmusic"),
        (
            "a street pianist playing for commuters",
            "a bedroom producer building a beat from scratch",
            "a choir singing in an old cathedral",
            "a guitarist looping a melody live",
            "a drummer covering a classic in one take",
            "a festival crowd singing every word",
            "a violinist busking in the subway",
            "a synth jam that started as an accident",
        ),
        0.5,
    ),
    Topic(
        "dance",
        ("dance", "choreography", "dancechallenge"),
        (
            "a dance crew nailing a new routine",
            "a ballet dancer rehearsing a solo",
            "grandparents learning a viral dance",
            "a breakdancer spinning on a subway platform",
            "a salsa night at a tiny bar",
            "a flash mob taking over a train station",
            "a contemporary duet in an empty warehouse",
            "a dance challenge with the whole office",
        ),
        0.7,
        1.4,
    ),
    Topic(
        "comedy",
        ("comedy", "funny", "sketch"),
        (
            "a roommate pretending to be a tour guide",
            "a sketch about the worst job interview ever",
            "a stand-up set about group chats",
            "a prank on my little brother going wrong",
            "a sketch about passive-aggressive office emails",
            "an impression of every teacher you ever had",
            "a parody of a cooking show",
            "a sketch about airport security",
        ),
        0.5,
        1.8,
    ),
    Topic(
        "news",
        ("news", "breakingnews", "worldnews"),
        (
            "a reporter covering flooding in the city centre",
            "a quick summary of today's headlines",
            "a crowd gathering for an election result",
            "a rescue team reaching a stranded village",
            "a local council vote on new bike lanes",
            "a scientist explaining a record heatwave",
            "a strike closing the main train lines",
            "a town cleaning up after a storm",
        ),
        0.55,
        2.0,
    ),
    Topic(
        "politics",
        ("politics", "debate", "policy"),
        (
            "a heated debate about housing",
            "a candidate's speech at a small-town rally",
            "a breakdown of the new budget",
            "students arguing both sides of a policy",
            "a parliament session getting loud",
            "a fact-check of a viral claim",
            "a protest march through the capital",
            "a town hall meeting about rent",
        ),
        0.75,
        2.5,
    ),
    Topic(
        "finance",
        ("finance", "money", "investing"),
        (
            "a budget plan for a first apartment",
            "a day trader watching the market open",
            "a breakdown of how compound interest works",
            "a saving challenge hitting its goal",
            "a small business owner counting the week's sales",
            "a comparison of index funds",
            "a student paying off a loan early",
            "a grocery haul on a tight budget",
        ),
        0.45,
    ),
    Topic(
        "tech",
        ("tech", "gadgets", "coding"),
        (
            "a new phone getting unboxed",
            "a custom mechanical keyboard being built",
            "a robot vacuum mapping a messy flat",
            "a developer shipping a side project overnight",
            "an old laptop getting a second life",
            "a home server rack being wired up",
            "a drone flying through a forest",
            "a smart home setup going wrong",
        ),
        0.35,
    ),
    Topic(
        "science",
        ("science", "physics", "space"),
        (
            "a rocket launch seen from the beach",
            "a chemistry demo that changes colour",
            "a telescope catching the rings of saturn",
            "a slow-motion water drop experiment",
            "a physics teacher breaking a world record",
            "microorganisms under a microscope",
            "a homemade cloud chamber showing particles",
            "a solar eclipse over the desert",
        ),
        0.3,
    ),
    Topic(
        "fashion",
        ("fashion", "ootd", "style"),
        (
            "a thrift haul turned into five outfits",
            "a runway show from the front row",
            "a vintage jacket getting tailored",
            "a capsule wardrobe for a whole week",
            "a street-style shoot in paris",
            "an old t-shirt upcycled into a tote bag",
            "a designer sketching a new collection",
            "a get-ready-with-me before a wedding",
        ),
        0.4,
        1.3,
    ),
    Topic(
        "beauty",
        ("beauty", "makeup", "skincare"),
        (
            "a five-minute everyday makeup look",
            "a skincare routine after a long flight",
            "a bold eyeliner look done freehand",
            "a hairstylist braiding a crown",
            "a drugstore dupe test",
            "a special-effects makeup transformation",
            "a nail artist painting tiny landscapes",
            "a barber doing a perfect skin fade",
        ),
        0.25,
    ),
    Topic(
        "fitness",
        ("fitness", "workout", "gym"),
        (
            "a home workout with no equipment",
            "a powerlifter hitting a new deadlift record",
            "a morning yoga flow on the balcony",
            "a couch-to-5k runner finishing the first race",
            "a calisthenics routine in the park",
            "a boxing session on the heavy bag",
            "a spin class at full speed",
            "a stretching routine for desk workers",
        ),
        0.75,
    ),
    Topic(
        "diy",
        ("diy", "homemade", "woodworking"),
        (
            "a tiny cabin built from scratch",
            "an old chair getting restored",
            "a bathroom renovation on a budget",
            "a woodworker carving a wooden spoon",
            "a balcony turned into a garden",
            "a bookshelf hidden behind a secret door",
            "a van conversion coming together",
            "a broken lamp rewired and brought back to life",
        ),
        0.3,
    ),
    Topic(
        "art",
        ("art", "painting", "artist"),
        (
            "a watercolour of a harbour at dawn",
            "a street artist painting a huge mural",
            "a potter throwing a bowl on the wheel",
            "a charcoal portrait coming to life",
            "an oil painting of a stormy sea",
            "a sculptor chiselling marble",
            "a sketchbook tour of a whole year",
            "a digital illustration from first line to final colour",
        ),
        0.2,
    ),
    Topic(
        "cars",
        ("cars", "carsofinstagram", "racing"),
        (
            "a classic car restored after thirty years",
            "a drift battle on a wet track",
            "an electric car on a cross-country road trip",
            "a rally car flying over a crest",
            "a mechanic rebuilding an engine",
            "a supercar launch at the drag strip",
            "a car wash detailing a very dirty suv",
            "a vintage car show on the seafront",
        ),
        0.8,
        1.2,
    ),
)

STYLES: tuple[Style, ...] = (
    Style(
        "tutorial",
        (
            "{mood} tutorial: {scene}, step by step",
            "how to film {scene} {setting}",
            "learn it in sixty seconds: {scene}",
        ),
        0.2,
    ),
    Style(
        "vlog",
        ("{mood} vlog: {scene} {setting}", "a day in my life with {scene}"),
        0.35,
    ),
    Style(
        "timelapse",
        ("{mood} timelapse of {scene} {setting}", "timelapse: {scene} {setting}"),
        0.15,
    ),
    Style(
        "reaction",
        ("reacting to {scene}, {mood} edition", "my honest reaction to {scene}"),
        0.7,
    ),
    Style(
        "remix",
        ("{mood} remix of {scene} {setting}", "remixed: {scene}, but make it {mood}"),
        0.6,
    ),
    Style(
        "short film",
        ("a {mood} short film about {scene}", "short film: {scene} {setting}"),
        0.4,
    ),
    Style("pov", ("pov: you are watching {scene} {setting}", "pov: {scene}, {mood} vibes"), 0.5),
    Style(
        "compilation",
        ("{mood} compilation: {scene}", "the best moments of {scene}"),
        0.65,
    ),
    Style(
        "behind the scenes",
        ("behind the scenes of {scene}", "{mood} behind the scenes: {scene} {setting}"),
        0.3,
    ),
    Style("explainer", ("explained in one minute: {scene}", "why {scene} is so {mood}"), 0.3),
)

MOODS: tuple[Mood, ...] = (
    Mood("calm", -0.8, "calm"),
    Mood("relaxing", -0.85, "relaxing"),
    Mood("cozy", -0.6, "cozy"),
    Mood("dreamy", -0.5, "dreamy"),
    Mood("sad", -0.55, "sad"),
    Mood("nostalgic", -0.35, "nostalgia"),
    Mood("wholesome", -0.1, "wholesome"),
    Mood("uplifting", 0.3, "uplifting"),
    Mood("funny", 0.35, "funny"),
    Mood("chaotic", 0.7, "chaos"),
    Mood("epic", 0.75, "epic"),
    Mood("energetic", 0.8, "energetic"),
    Mood("intense", 0.85, "intense"),
    Mood("hype", 0.95, "hype"),
)

SETTINGS: tuple[str, ...] = (
    "on a rainy morning",
    "at golden hour",
    "late at night",
    "on a lazy sunday",
    "in slow motion",
    "before sunrise",
    "after a long week",
    "in the middle of winter",
    "on a summer evening",
    "in one take",
    "",
    "",
)

AGE_BANDS: tuple[str, ...] = ("13-15", "16-17", "18-24", "25-34", "35-44", "45-54", "55+")
TEEN_BANDS: frozenset[str] = frozenset({"13-15", "16-17"})
_ADULT_BAND_WEIGHTS = np.array([0.30, 0.28, 0.18, 0.12, 0.12])

TIMEZONES: tuple[tuple[str, float, float], ...] = (
    # (IANA zone, standard UTC offset in hours, share of users); offsets ignore DST on purpose.
    ("America/New_York", -5.0, 0.14),
    ("America/Chicago", -6.0, 0.07),
    ("America/Denver", -7.0, 0.03),
    ("America/Los_Angeles", -8.0, 0.09),
    ("America/Mexico_City", -6.0, 0.04),
    ("America/Sao_Paulo", -3.0, 0.06),
    ("Europe/London", 0.0, 0.08),
    ("Europe/Paris", 1.0, 0.05),
    ("Europe/Berlin", 1.0, 0.06),
    ("Europe/Madrid", 1.0, 0.03),
    ("Europe/Istanbul", 3.0, 0.03),
    ("Africa/Lagos", 1.0, 0.04),
    ("Africa/Johannesburg", 2.0, 0.02),
    ("Asia/Kolkata", 5.5, 0.08),
    ("Asia/Jakarta", 7.0, 0.04),
    ("Asia/Singapore", 8.0, 0.02),
    ("Asia/Manila", 8.0, 0.03),
    ("Asia/Seoul", 9.0, 0.03),
    ("Asia/Tokyo", 9.0, 0.04),
    ("Australia/Sydney", 10.0, 0.02),
)
#: Two cities per zone: a creator's clips carry the city of their zone picked by their index
#: (no random draw, so every other figure of a seeded world stays as it was).
ZONE_CITIES: dict[str, tuple[str, str]] = {
    "America/New_York": ("new york", "boston"),
    "America/Chicago": ("chicago", "houston"),
    "America/Denver": ("denver", "salt lake city"),
    "America/Los_Angeles": ("los angeles", "seattle"),
    "America/Mexico_City": ("mexico city", "guadalajara"),
    "America/Sao_Paulo": ("são paulo", "rio de janeiro"),
    "Europe/London": ("london", "manchester"),
    "Europe/Paris": ("paris", "lyon"),
    "Europe/Berlin": ("berlin", "munich"),
    "Europe/Madrid": ("madrid", "barcelona"),
    "Europe/Istanbul": ("istanbul", "ankara"),
    "Africa/Lagos": ("lagos", "abuja"),
    "Africa/Johannesburg": ("johannesburg", "cape town"),
    "Asia/Kolkata": ("mumbai", "delhi"),
    "Asia/Jakarta": ("jakarta", "surabaya"),
    "Asia/Singapore": ("singapore", "singapore"),
    "Asia/Manila": ("manila", "cebu"),
    "Asia/Seoul": ("seoul", "busan"),
    "Asia/Tokyo": ("tokyo", "osaka"),
    "Australia/Sydney": ("sydney", "melbourne"),
}

SOURCES: tuple[str, ...] = ("following", "trending", "fresh", "ann")
_SOURCE_MIX = np.array([0.30, 0.20, 0.12, 0.38])
# Local hour-of-day activity: low at night, a lunch bump, an evening peak.
_DIURNAL = np.array(
    [3, 2, 1, 1, 1, 1, 2, 4, 5, 4, 4, 5, 7, 6, 5, 5, 6, 7, 8, 10, 11, 11, 9, 6], dtype=np.float64
)

# Event types in the order they follow their impression; codes index this tuple.
_EV_IMPRESSION, _EV_VIEW, _EV_SKIP, _EV_LIKE, _EV_COMMENT, _EV_SHARE = 0, 1, 2, 3, 4, 5
_EV_REMIX, _EV_FOLLOW, _EV_SEE_LESS, _EV_REPORT = 6, 7, 8, 9
_EVENT_NAMES: tuple[str, ...] = (
    "impression",
    "view",
    "skip",
    "like",
    "comment",
    "share",
    "remix",
    "follow",
    "see_less",
    "report",
)
# Seconds after the impression (as a share of the watch time, plus a fixed lag).
_EVENT_LAG_FRAC = np.array([0.0, 1.0, 1.0, 0.8, 1.0, 1.0, 1.0, 0.9, 1.0, 1.0])
_EVENT_LAG_S = np.array([0.0, 0.05, 0.1, 0.2, 2.5, 1.0, 1.5, 0.3, 0.4, 3.0])


# -- config and result --------------------------------------------------------------------------
@dataclass
class WorldConfig:
    """Size, seed and mix of a generated world.

    Parameters
    ----------
    n_users
        Users in the world; about 10% of them are creators.
    n_clips
        Clips authored by the creators.
    n_events
        Target number of event rows (the log is cut to at most this many).
    days
        Length of the logged period; events fall in the ``days`` before ``now``.
    seed
        Seed of every random draw; the same config gives the same world.
    teen_share
        Share of users in the ``13-15`` and ``16-17`` age bands.
    violative_share
        Share of clips labelled ``violative`` (about three times as many are ``borderline``).
    mature_share
        Share of clips with maturity 2 (adults only); twice as many get maturity 1.
    generated_share
        Share of clips that are AI-generated (``is_generated``).
    now
        The end of the logged period (naive UTC); ``None`` means :data:`DEFAULT_NOW`.
    """

    n_users: int = 2000
    n_clips: int = 20000
    n_events: int = 500_000
    days: int = 14
    seed: int = 0
    teen_share: float = 0.12
    violative_share: float = 0.01
    mature_share: float = 0.05
    generated_share: float = 0.6
    now: datetime | None = None

    def validate(self) -> None:
        """Raise :class:`WorldConfigError` naming every value that cannot describe a world."""
        problems: list[str] = []
        if self.n_users < 20:
            problems.append(f"n_users={self.n_users} (need at least 20)")
        if self.n_clips < 20:
            problems.append(f"n_clips={self.n_clips} (need at least 20)")
        if self.n_events < 0:
            problems.append(f"n_events={self.n_events} (need at least 0)")
        if not 2 <= self.days <= 3650:
            problems.append(f"days={self.days} (need 2..3650)")
        for name in ("teen_share", "violative_share", "mature_share", "generated_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name}={value} (need 0..1)")
        if self.violative_share * 4 > 1.0:
            problems.append(f"violative_share={self.violative_share} (need at most 0.25)")
        if self.mature_share * 3 > 1.0:
            problems.append(f"mature_share={self.mature_share} (need at most 1/3)")
        if self.now is not None and self.now.tzinfo is not None:
            problems.append("now must be naive UTC")
        if problems:
            msg = "invalid WorldConfig: " + "; ".join(problems)
            raise WorldConfigError(msg)

    @property
    def end(self) -> datetime:
        """The end of the logged period (``now`` or :data:`DEFAULT_NOW`)."""
        return self.now if self.now is not None else DEFAULT_NOW


@dataclass
class World:
    """A generated world: the tables a store holds, plus the ground truth that drew them.

    ``users``, ``clips``, ``follows``, ``blocks`` and ``events`` have the columns and dtypes of
    the store's tables and go straight into ``Store.add_users`` and friends. The arrays are
    aligned with ``user_ids`` (users) and ``item_ids`` (clips), both sorted ascending.
    """

    config: WorldConfig
    users: pl.DataFrame
    clips: pl.DataFrame
    follows: pl.DataFrame
    blocks: pl.DataFrame
    events: pl.DataFrame
    user_ids: IntArray
    item_ids: IntArray
    topic_names: tuple[str, ...]
    user_topic_pref: FloatArray
    user_energy_pref: FloatArray
    clip_topic_idx: IntArray
    clip_topic2_idx: IntArray
    clip_energy: FloatArray
    clip_quality: FloatArray
    clip_intensity: FloatArray
    stats: dict[str, float] = field(default_factory=dict)

    def user_index(self, user_ids: npt.ArrayLike) -> IntArray:
        """Map user ids to row positions in the ground-truth arrays (unknown ids raise)."""
        return _positions(self.user_ids, user_ids, "user")

    def item_index(self, item_ids: npt.ArrayLike) -> IntArray:
        """Map clip ids to positions in the ground-truth arrays (unknown ids raise)."""
        return _positions(self.item_ids, item_ids, "clip")

    def true_affinity(self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike) -> FloatArray:
        """Return the ground-truth preference of each user for each paired clip, in ``[0, 1]``.

        Parameters
        ----------
        user_ids, item_ids
            Equal-length (or broadcastable) arrays of ids, one pair per element.

        Returns
        -------
        numpy.ndarray
            ``0.55 * topic fit + 0.25 * energy fit + 0.20 * quality``, where topic fit is the
            user's weight on the clip's topics relative to their favourite topic.
        """
        u = self.user_index(user_ids)
        i = self.item_index(item_ids)
        u, i = np.broadcast_arrays(u, i)
        return _affinity(
            self.user_topic_pref,
            self.user_energy_pref,
            self.clip_topic_idx,
            self.clip_topic2_idx,
            self.clip_energy,
            self.clip_quality,
            u,
            i,
        )


def _positions(sorted_ids: IntArray, ids: npt.ArrayLike, what: str) -> IntArray:
    arr = np.asarray(ids, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, arr).clip(0, len(sorted_ids) - 1)
    bad = sorted_ids[pos] != arr
    if np.any(bad):
        missing = np.unique(arr[bad])[:5].tolist()
        msg = f"unknown {what} ids in this world: {missing}"
        raise KeyError(msg)
    return pos.astype(np.int64)


def _affinity(
    pref: FloatArray,
    energy_pref: FloatArray,
    topic1: IntArray,
    topic2: IntArray,
    clip_energy: FloatArray,
    quality: FloatArray,
    u: IntArray,
    i: IntArray,
) -> FloatArray:
    t1 = topic1[i]
    t2 = topic2[i]
    has2 = t2 >= 0
    p1 = pref[u, t1]
    p2 = np.where(has2, pref[u, np.where(has2, t2, t1)], p1)
    topic_fit = (0.75 * p1 + 0.25 * p2) / pref[u].max(axis=1)
    energy_fit = 1.0 - np.abs(energy_pref[u] - clip_energy[i]) / 2.0
    out = 0.55 * topic_fit + 0.25 * energy_fit**2 + 0.20 * quality[i]
    return np.asarray(out.clip(0.0, 1.0), dtype=np.float64)


# -- progress -----------------------------------------------------------------------------------
class _Steps:
    """Advance a rich progress bar, or do nothing when progress is off."""

    def __init__(self, progress: Any | None, task: Any | None) -> None:
        self._progress = progress
        self._task = task

    def done(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=description)


@contextmanager
def _steps(enabled: bool, total: int) -> Iterator[_Steps]:
    if not enabled:
        yield _Steps(None, None)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]demo world[/] {task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task("users", total=total)
        yield _Steps(progress, task)


# -- generation ---------------------------------------------------------------------------------
def build_world(cfg: WorldConfig, *, progress: bool = False) -> World:
    """Generate a reproducible world of users, clips, follows, blocks and logged events.

    Parameters
    ----------
    cfg
        Sizes, seed and mix; validated first.
    progress
        Show a rich progress bar on the console.

    Returns
    -------
    World
        The tables (ready for ``Store.add_*`` and ``Store.append_events``) and the ground truth.

    Raises
    ------
    WorldConfigError
        When ``cfg`` holds values that cannot describe a world.
    """
    cfg.validate()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    with _steps(progress, 5) as steps:
        t = time.perf_counter()
        users = _draw_users(cfg, rng)
        timings["users_ms"] = (time.perf_counter() - t) * 1e3
        steps.done("social graph")
        t = time.perf_counter()
        graph = _draw_graph(cfg, users, rng)
        timings["graph_ms"] = (time.perf_counter() - t) * 1e3
        steps.done("clips")
        t = time.perf_counter()
        clips = _draw_clips(cfg, users, graph, rng)
        timings["clips_ms"] = (time.perf_counter() - t) * 1e3
        steps.done("events")
        t = time.perf_counter()
        events, new_follows = _draw_events(cfg, users, graph, clips, rng)
        timings["events_ms"] = (time.perf_counter() - t) * 1e3
        steps.done("tables")
        t = time.perf_counter()
        world = _assemble(cfg, users, graph, clips, events, new_follows)
        timings["tables_ms"] = (time.perf_counter() - t) * 1e3
        steps.done("done")
    timings["total_ms"] = (time.perf_counter() - t0) * 1e3
    world.stats.update({k: round(v, 1) for k, v in timings.items()})
    logger.info(
        "demo world built users=%d clips=%d follows=%d blocks=%d events=%d "
        "distinct_captions=%d ms=%.0f",
        world.users.height,
        world.clips.height,
        world.follows.height,
        world.blocks.height,
        world.events.height,
        world.clips["caption"].n_unique(),
        timings["total_ms"],
    )
    return world


@dataclass
class _Users:
    ids: IntArray
    pref: FloatArray
    energy: FloatArray
    community: IntArray
    band: IntArray
    is_teen: BoolArray
    tz: IntArray
    created_us: IntArray  # relative to now
    activity: FloatArray
    creators: IntArray  # user positions of creators
    creator_pop: FloatArray  # per creator
    creator_skill: FloatArray  # per creator


@dataclass
class _Graph:
    src: IntArray  # follower position
    dst: IntArray  # followee position
    created_us: IntArray
    friend_off: IntArray  # CSR of mutual follows by user position
    friend_dst: IntArray
    blocks_user: IntArray
    blocks_target: IntArray
    blocks_kind: npt.NDArray[np.str_]
    blocks_created_us: IntArray


@dataclass
class _Clips:
    author: IntArray  # user position, clips sorted by created time
    created_us: IntArray
    topic1: IntArray
    topic2: IntArray
    energy: FloatArray
    quality: FloatArray
    intensity: FloatArray
    duration: FloatArray
    caption: pl.Series
    hashtags: pl.Series
    safety: npt.NDArray[np.str_]
    maturity: IntArray
    generated: BoolArray
    remix_of: IntArray  # clip position or -1
    cameo_off: IntArray
    cameo_users: IntArray
    popularity: FloatArray


def _draw_users(cfg: WorldConfig, rng: np.random.Generator) -> _Users:
    n, n_topics = cfg.n_users, len(TOPICS)
    n_comm = max(2, n // 60)
    comm_w = rng.dirichlet(np.full(n_topics, 0.25), size=n_comm)
    comm_w = 0.85 * comm_w + 0.15 / n_topics
    community = rng.integers(0, n_comm, size=n)
    # 2-4 favourite topics per user, drawn from the community's mix (Gumbel top-k).
    k = rng.choice(np.array([2, 3, 4]), size=n, p=[0.4, 0.4, 0.2])
    scores = np.log(comm_w[community]) + rng.gumbel(size=(n, n_topics))
    ranks = np.argsort(np.argsort(-scores, axis=1), axis=1)
    chosen = ranks < k[:, None]
    weights = np.where(chosen, rng.gamma(1.2, size=(n, n_topics)), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    pref = 0.94 * weights + 0.06 / n_topics

    n_teen = round(cfg.teen_share * n)
    band = np.empty(n, dtype=np.int64)
    perm = rng.permutation(n)
    band[perm[:n_teen]] = rng.choice(np.array([0, 1]), size=n_teen, p=[0.45, 0.55])
    band[perm[n_teen:]] = 2 + rng.choice(5, size=n - n_teen, p=_ADULT_BAND_WEIGHTS)
    is_teen = band <= 1
    # Younger users like higher-energy clips on average.
    energy = rng.normal(0.35 - 0.12 * band, 0.4).clip(-1.0, 1.0)

    tz_p = np.array([w for _, _, w in TIMEZONES])
    tz = rng.choice(len(TIMEZONES), size=n, p=tz_p / tz_p.sum())
    activity = rng.lognormal(0.0, 0.9, size=n) * np.where(is_teen, 1.4, 1.0)

    n_creators = max(2, round(0.1 * n))
    creators = np.sort(rng.choice(n, size=n_creators, replace=False)).astype(np.int64)
    creator_pop = (rng.pareto(1.3, size=n_creators) + 1.0).clip(1.0, 500.0)
    creator_skill = rng.normal(0.0, 0.7, size=n_creators) + 0.15 * np.log(creator_pop)

    window_us = cfg.days * _DAY_US
    age_days = rng.uniform(1.0, 730.0, size=n)
    created_us = -window_us - (age_days * _DAY_US).astype(np.int64)
    # Creators joined before their earliest possible clip (1.5 periods back).
    created_us[creators] -= window_us
    return _Users(
        ids=np.arange(1, n + 1, dtype=np.int64),
        pref=pref,
        energy=energy,
        community=community.astype(np.int64),
        band=band,
        is_teen=is_teen,
        tz=tz.astype(np.int64),
        created_us=created_us,
        activity=activity,
        creators=creators,
        creator_pop=creator_pop,
        creator_skill=creator_skill,
    )


def _csr(src: IntArray, dst: IntArray, n: int) -> tuple[IntArray, IntArray]:
    order = np.argsort(src, kind="stable")
    counts = np.bincount(src, minlength=n)
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    return off, dst[order].astype(np.int64)


def _top_k_rows(scores: FloatArray, k: IntArray) -> tuple[IntArray, IntArray]:
    """Row and column indices of the ``k[r]`` highest scores of each row ``r``."""
    order = np.argsort(-scores, axis=1)
    cols = np.arange(scores.shape[1])[None, :]
    mask = cols < k[:, None]
    rows = np.broadcast_to(np.arange(scores.shape[0])[:, None], scores.shape)
    return rows[mask].astype(np.int64), order[mask].astype(np.int64)


def _draw_graph(cfg: WorldConfig, users: _Users, rng: np.random.Generator) -> _Graph:
    n = cfg.n_users
    creators = users.creators
    n_c = len(creators)
    # 1) Follows of creators: popularity (power law) times taste similarity (homophily).
    norm = users.pref / np.linalg.norm(users.pref, axis=1, keepdims=True)
    k_c = np.clip(rng.lognormal(np.log(10.0), 0.8, size=n).astype(np.int64), 1, max(1, n_c - 1))
    srcs: list[IntArray] = []
    dsts: list[IntArray] = []
    log_pop = np.log(users.creator_pop)
    chunk = max(1, 4_000_000 // max(n_c, 1))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        sim = norm[lo:hi] @ norm[creators].T
        scores = log_pop[None, :] + 4.0 * np.log(sim + 0.02) + rng.gumbel(size=(hi - lo, n_c))
        r, c = _top_k_rows(scores, k_c[lo:hi])
        srcs.append(r + lo)
        dsts.append(creators[c])
    # 2) Peer follows inside the community (friends share tastes), some across communities.
    comm_order = np.argsort(users.community, kind="stable").astype(np.int64)
    comm_sizes = np.bincount(users.community)
    comm_off = np.concatenate([[0], np.cumsum(comm_sizes)]).astype(np.int64)
    k_p = rng.poisson(4.0, size=n) + 1
    p_src = np.repeat(np.arange(n, dtype=np.int64), k_p)
    cm = users.community[p_src]
    pick = comm_off[cm] + (rng.random(len(p_src)) * comm_sizes[cm]).astype(np.int64)
    p_dst = comm_order[pick]
    k_x = rng.poisson(0.8, size=n)
    x_src = np.repeat(np.arange(n, dtype=np.int64), k_x)
    x_dst = rng.integers(0, n, size=len(x_src)).astype(np.int64)
    srcs += [p_src, x_src]
    dsts += [p_dst, x_dst]
    src = np.concatenate(srcs)
    dst = np.concatenate(dsts)
    # 3) Reciprocity: most peers follow back, creators sometimes do.
    is_creator = np.zeros(n, dtype=bool)
    is_creator[creators] = True
    p_back = np.where(is_creator[dst] & ~is_creator[src], 0.05, 0.6)
    back = rng.random(len(src)) < p_back
    src, dst = np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]])
    keep = src != dst
    key = np.unique(src[keep] * n + dst[keep])
    src, dst = key // n, key % n
    mutual = np.isin(key, dst * n + src)
    friend_off, friend_dst = _csr(src[mutual], dst[mutual], n)

    window_start = -cfg.days * _DAY_US
    since = np.maximum(users.created_us[src], users.created_us[dst])
    created = since + (rng.random(len(src)) * (window_start - since)).astype(np.int64)

    # A few blocks and mutes: mostly of creators, kind block or mute.
    n_b = max(2, n // 40)
    b_user = rng.integers(0, n, size=n_b).astype(np.int64)
    b_target = np.where(
        rng.random(n_b) < 0.7,
        creators[rng.integers(0, n_c, size=n_b)],
        rng.integers(0, n, size=n_b),
    ).astype(np.int64)
    b_kind = np.where(rng.random(n_b) < 0.4, "block", "mute")
    ok = b_user != b_target
    b_user, b_target, b_kind = b_user[ok], b_target[ok], b_kind[ok]
    _, first = np.unique(b_user * n * 2 + b_target * 2 + (b_kind == "block"), return_index=True)
    first = np.sort(first)
    b_user, b_target, b_kind = b_user[first], b_target[first], b_kind[first]
    b_created = -(rng.uniform(0.0, cfg.days * 3.0, size=len(b_user)) * _DAY_US).astype(np.int64)
    b_created = np.maximum(b_created, users.created_us[b_user] + _DAY_US)
    return _Graph(
        src=src.astype(np.int64),
        dst=dst.astype(np.int64),
        created_us=created.astype(np.int64),
        friend_off=friend_off,
        friend_dst=friend_dst,
        blocks_user=b_user,
        blocks_target=b_target,
        blocks_kind=b_kind,
        blocks_created_us=b_created,
    )


def _sample_rows(cum: FloatArray, u: FloatArray) -> IntArray:
    """Inverse-CDF sample one column per row of cumulative probabilities ``cum``."""
    idx = (cum < u[:, None]).sum(axis=1)
    return np.asarray(np.minimum(idx, cum.shape[1] - 1), dtype=np.int64)


@dataclass
class _CaptionPool:
    """Distinct caption bodies per topic (and one pool of remix captions per topic)."""

    text: list[str]
    topic: IntArray
    style: IntArray
    mood: IntArray
    hashtags: list[list[str]]
    off: IntArray  # offsets of each topic's main pool
    size: IntArray
    remix_off: IntArray
    remix_size: IntArray


def _caption_pool(n_clips: int, rng: np.random.Generator) -> _CaptionPool:
    n_topics = len(TOPICS)
    per_topic = int(np.clip(n_clips // (n_topics * 4), 6, 240))
    per_topic_remix = max(2, per_topic // 6)
    remix_style = next(i for i, s in enumerate(STYLES) if s.name == "remix")
    plain_styles = np.array([i for i in range(len(STYLES)) if i != remix_style])
    text: list[str] = []
    topics: list[int] = []
    styles: list[int] = []
    moods: list[int] = []
    tags: list[list[str]] = []
    off = np.zeros(n_topics, dtype=np.int64)
    remix_off = np.zeros(n_topics, dtype=np.int64)
    for t, topic in enumerate(TOPICS):
        for remix, count in ((False, per_topic), (True, per_topic_remix)):
            (remix_off if remix else off)[t] = len(text)
            st = (
                np.full(count, remix_style)
                if remix
                else plain_styles[rng.integers(0, len(plain_styles), size=count)]
            )
            md = rng.integers(0, len(MOODS), size=count)
            sc = rng.integers(0, len(topic.scenes), size=count)
            se = rng.integers(0, len(SETTINGS), size=count)
            tp = rng.integers(0, 1 << 30, size=count)
            for j in range(count):
                style, mood = STYLES[int(st[j])], MOODS[int(md[j])]
                template = style.templates[int(tp[j]) % len(style.templates)]
                body = template.format(
                    mood=mood.name, scene=topic.scenes[int(sc[j])], setting=SETTINGS[int(se[j])]
                )
                body = " ".join(body.split())
                n_tags = 1 + int(tp[j] >> 8) % 2
                htags = list(topic.hashtags[:n_tags])
                if mood.hashtag not in htags:
                    htags.append(mood.hashtag)
                if (tp[j] >> 12) % 4 == 0 and not remix:
                    htags.append(style.name.replace(" ", ""))
                if remix and "remix" not in htags:
                    htags.append("remix")
                text.append(body + " " + " ".join("#" + h for h in htags))
                topics.append(t)
                styles.append(int(st[j]))
                moods.append(int(md[j]))
                tags.append(htags)
    return _CaptionPool(
        text=text,
        topic=np.array(topics, dtype=np.int64),
        style=np.array(styles, dtype=np.int64),
        mood=np.array(moods, dtype=np.int64),
        hashtags=tags,
        off=off,
        size=np.full(n_topics, per_topic, dtype=np.int64),
        remix_off=remix_off,
        remix_size=np.full(n_topics, per_topic_remix, dtype=np.int64),
    )


def _draw_clips(cfg: WorldConfig, users: _Users, graph: _Graph, rng: np.random.Generator) -> _Clips:
    m = cfg.n_clips
    creators = users.creators
    # Authors: prolific creators are the popular ones (power law), with noise.
    rate = users.creator_pop**0.6 * rng.lognormal(0.0, 0.5, size=len(creators))
    author_c = rng.choice(len(creators), size=m, p=rate / rate.sum())
    author = creators[author_c]
    # Created times spread over 1.5 periods before now (a backlog, then the logged period).
    window_us = cfg.days * _DAY_US
    span = int(1.5 * window_us)
    created = -(rng.random(m) * (span - 3600 * _US)).astype(np.int64) - 3600 * _US
    order = np.argsort(created, kind="stable")
    created, author, author_c = created[order], author[order], author_c[order]

    # Topics: creators stick to their own tastes (sharpened preferences).
    sharp = users.pref[author] ** 2
    sharp /= sharp.sum(axis=1, keepdims=True)
    cum = np.cumsum(sharp, axis=1)
    topic1 = _sample_rows(cum, rng.random(m))
    topic2_draw = _sample_rows(cum, rng.random(m))
    topic2 = np.where((rng.random(m) < 0.4) & (topic2_draw != topic1), topic2_draw, -1)

    # Remixes of earlier (mostly recent) original clips take the source's topics.
    remix_of = np.full(m, -1, dtype=np.int64)
    is_remix = (rng.random(m) < 0.08) & (np.arange(m) > 10)
    cand = np.nonzero(is_remix)[0]
    src = (cand - 1 - (cand * rng.random(len(cand)) ** 2).astype(np.int64)).clip(0, m - 1)
    remix_of[cand] = src
    # Point every remix at an original (a remix of a remix remixes its source).
    while np.any(chained := remix_of[remix_of[cand]] >= 0):
        remix_of[cand[chained]] = remix_of[remix_of[cand[chained]]]
    topic1[cand] = topic1[remix_of[cand]]
    topic2[cand] = topic2[remix_of[cand]]

    # Captions: three draws from the topic's pool, keep the mood nearest the author's energy.
    pool = _caption_pool(m, rng)
    mood_energy = np.array([md.energy for md in MOODS])
    off = np.where(is_remix, pool.remix_off[topic1], pool.off[topic1])
    size = np.where(is_remix, pool.remix_size[topic1], pool.size[topic1])
    draws = off[:, None] + (rng.random((m, 3)) * size[:, None]).astype(np.int64)
    target = users.energy[author][:, None] + rng.normal(0.0, 0.35, size=(m, 1))
    gap = np.abs(mood_energy[pool.mood[draws]] - target)
    cap = draws[np.arange(m), np.argmin(gap, axis=1)]
    energy = (mood_energy[pool.mood[cap]] + rng.normal(0.0, 0.12, size=m)).clip(-1.0, 1.0)

    topic_int = np.array([t.intensity for t in TOPICS])
    style_int = np.array([s.intensity for s in STYLES])
    intensity = (
        0.5 * (energy + 1.0) / 2.0
        + 0.3 * topic_int[topic1]
        + 0.2 * style_int[pool.style[cap]]
        + rng.normal(0.0, 0.05, size=m)
    ).clip(0.0, 1.0)

    # Safety: a few bad-actor creators post most violative clips.
    bad_creator = rng.random(len(creators)) < 0.05
    p_bad = np.where(bad_creator[author_c], 12.0, 1.0)
    labels = np.full(m, "safe", dtype=object)
    n_viol = round(cfg.violative_share * m)
    n_border = round(3 * cfg.violative_share * m)
    flagged = rng.choice(m, size=n_viol + n_border, replace=False, p=p_bad / p_bad.sum())
    labels[flagged[:n_viol]] = "violative"
    labels[flagged[n_viol:]] = "borderline"
    safety = labels.astype(str)

    quality_logit = (
        users.creator_skill[author_c] + rng.normal(0.0, 0.8, size=m) - 0.6 * (safety != "safe")
    )
    quality = 1.0 / (1.0 + np.exp(-quality_logit))

    topic_mature = np.array([t.mature for t in TOPICS])
    p_mat = topic_mature[topic1] * np.where(safety == "safe", 1.0, 6.0)
    n_m2 = round(cfg.mature_share * m)
    n_m1 = round(2 * cfg.mature_share * m)
    mature = rng.choice(m, size=n_m2 + n_m1, replace=False, p=p_mat / p_mat.sum())
    maturity = np.zeros(m, dtype=np.int64)
    maturity[mature[:n_m2]] = 2
    maturity[mature[n_m2:]] = 1

    generated = rng.random(m) < cfg.generated_share
    style_name = np.array([s.name for s in STYLES])[pool.style[cap]]
    base = np.where(style_name == "tutorial", 30.0, np.where(style_name == "timelapse", 12.0, 18.0))
    duration = np.round((base * rng.lognormal(0.0, 0.45, size=m)).clip(5.0, 60.0), 1)

    # Cameos: some clips feature one or two friends (mutual follows) of the author.
    deg = graph.friend_off[author + 1] - graph.friend_off[author]
    has_cameo = (rng.random(m) < 0.12) & (deg > 0)
    n_cam = np.where(has_cameo, 1 + (rng.random(m) < 0.3), 0)
    cam_clip = np.repeat(np.arange(m), n_cam)
    cam_pick = graph.friend_off[author[cam_clip]] + (
        rng.random(len(cam_clip)) * deg[cam_clip]
    ).astype(np.int64)
    cam_user = graph.friend_dst[cam_pick]
    _, first = np.unique(cam_clip * cfg.n_users + cam_user, return_index=True)
    first = np.sort(first)
    cam_clip, cam_user = cam_clip[first], cam_user[first]
    cameo_off = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(cam_clip, minlength=m), out=cameo_off[1:])

    popularity = quality + 0.25 * np.log(users.creator_pop[author_c])
    caption = pl.Series("caption", pool.text, dtype=pl.String).gather(cap)
    second_tag = pl.Series([t.hashtags[0] for t in TOPICS], dtype=pl.String).gather(
        np.maximum(topic2, 0)
    )
    hashtags = (
        pl.DataFrame(
            {
                "tags": pl.Series(pool.hashtags, dtype=pl.List(pl.String)).gather(cap),
                "extra": second_tag,
                "has": topic2 >= 0,
            }
        )
        .select(
            pl.concat_list("tags", pl.when("has").then("extra"))
            .list.drop_nulls()
            .list.unique(maintain_order=True)
            .alias("hashtags")
        )
        .to_series()
    )
    return _Clips(
        author=author.astype(np.int64),
        created_us=created,
        topic1=topic1,
        topic2=topic2.astype(np.int64),
        energy=energy,
        quality=quality,
        intensity=intensity,
        duration=duration,
        caption=caption,
        hashtags=hashtags,
        safety=safety,
        maturity=maturity,
        generated=generated,
        remix_of=remix_of,
        cameo_off=cameo_off,
        cameo_users=cam_user.astype(np.int64),
        popularity=popularity,
    )


def _grouped(group: IntArray, n_groups: int) -> tuple[IntArray, IntArray, IntArray]:
    """Sort clips (already in time order) by group; return order, keys and group offsets."""
    n_rows = len(group)
    order = np.argsort(group, kind="stable").astype(np.int64)
    keys = group[order] * (n_rows + 1) + order
    off = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=n_groups), out=off[1:])
    return order, keys, off


def _pick_recent(
    grouped: tuple[IntArray, IntArray, IntArray],
    group: IntArray,
    before_rank: IntArray,
    n_rows: int,
    rng: np.random.Generator,
    *,
    tries: int,
    recency: float,
) -> tuple[IntArray, BoolArray]:
    """Draw ``tries`` clips of ``group`` created before rank ``before_rank``, per query.

    Draws lean to recent clips (``recency`` > 1 is stronger). Returns a ``(queries, tries)``
    array of clip positions and a mask of the queries whose group had any clip yet.
    """
    order, keys, off = grouped
    hi = np.searchsorted(keys, group * (n_rows + 1) + before_rank, side="left")
    avail = hi - off[group]
    back = (rng.random((len(group), tries)) ** recency * avail[:, None]).astype(np.int64)
    pos = np.clip(hi[:, None] - 1 - back, 0, len(order) - 1)
    return order[pos], avail > 0


def _draw_events(
    cfg: WorldConfig, users: _Users, graph: _Graph, clips: _Clips, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, IntArray]]:
    n, m = cfg.n_users, cfg.n_clips
    window_us = cfg.days * _DAY_US
    empty_ev: dict[str, Any] = {"n": 0}
    if cfg.n_events == 0:
        return empty_ev, {"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64)}
    rows_per_imp = 2.3
    n_imp = int(cfg.n_events / rows_per_imp * 1.15) + 50
    # Sessions: users by activity, 1 + geometric impressions, start at a local evening-heavy hour.
    mean_len = 14.0
    n_sess = int(n_imp / mean_len * 1.2) + 10
    s_len = np.minimum(rng.geometric(1.0 / mean_len, size=n_sess), 60).astype(np.int64)
    cut = int(np.searchsorted(np.cumsum(s_len), n_imp)) + 1
    s_len = s_len[:cut]
    n_sess = len(s_len)
    s_user = rng.choice(n, size=n_sess, p=users.activity / users.activity.sum()).astype(np.int64)
    day = rng.integers(0, cfg.days + 1, size=n_sess)
    hour = rng.choice(24, size=n_sess, p=_DIURNAL / _DIURNAL.sum())
    local_us = ((hour + rng.random(n_sess)) * 3600 * _US).astype(np.int64)
    tz_off = np.array([o for _, o, _ in TIMEZONES])[users.tz[s_user]]
    end = cfg.end
    midnight = datetime(end.year, end.month, end.day)
    midnight_rel = int((midnight - end) / timedelta(microseconds=1))
    start = midnight_rel - day * _DAY_US + local_us - (tz_off * 3600 * _US).astype(np.int64)
    latest = -2 * 3600 * _US
    start = np.where(start > latest, start - _DAY_US, start)
    start = np.where(start < -window_us, start + _DAY_US, start).clip(-window_us, latest)

    # Impressions, contiguous per session (sessions in random order).
    imp_sess = np.repeat(np.arange(n_sess, dtype=np.int64), s_len)
    sess_off = np.zeros(n_sess + 1, dtype=np.int64)
    np.cumsum(s_len, out=sess_off[1:])
    pos_in_sess = np.arange(len(imp_sess), dtype=np.int64) - sess_off[imp_sess]
    q = len(imp_sess)
    u = s_user[imp_sess]
    before = np.searchsorted(clips.created_us, start[imp_sess], side="left").astype(np.int64)

    # Candidate sources, in a logged feed's mix; a source with nothing to offer falls back
    # (following -> ann, fresh -> trending, ann -> trending).
    src = rng.choice(len(SOURCES), size=q, p=_SOURCE_MIX).astype(np.int64)
    item = np.full(q, -1, dtype=np.int64)

    # following: a followed creator, then one of their recent clips.
    has_clips = np.zeros(n, dtype=bool)
    has_clips[clips.author] = True
    fmask = has_clips[graph.dst]
    f_off, f_dst = _csr(graph.src[fmask], graph.dst[fmask], n)
    deg = f_off[u + 1] - f_off[u]
    idx = np.nonzero((src == 0) & (deg > 0))[0]
    followee = f_dst[f_off[u[idx]] + (rng.random(len(idx)) * deg[idx]).astype(np.int64)]
    cand, ok = _pick_recent(
        _grouped(clips.author, n), followee, before[idx], m, rng, tries=1, recency=2.0
    )
    item[idx[ok]] = cand[ok, 0]
    src[(src == 0) & (item < 0)] = 3

    # fresh: the last day's uploads.
    idx = np.nonzero(src == 2)[0]
    lo = np.searchsorted(clips.created_us, start[imp_sess[idx]] - _DAY_US, side="left")
    span = before[idx] - lo
    ok = span > 0
    item[idx[ok]] = lo[ok] + (rng.random(int(ok.sum())) * span[ok]).astype(np.int64)
    src[(src == 2) & (item < 0)] = 1

    # ann: a topic from the user's (sharpened, explored) taste, then the best of three recent
    # clips of that topic by quality and energy fit (what a vector search on taste would find).
    idx = np.nonzero(src == 3)[0]
    tp = users.pref[u[idx]] ** 1.5
    tp /= tp.sum(axis=1, keepdims=True)
    tp = 0.9 * tp + 0.1 / len(TOPICS)
    topic = _sample_rows(np.cumsum(tp, axis=1), rng.random(len(idx)))
    cand, ok = _pick_recent(
        _grouped(clips.topic1, len(TOPICS)), topic, before[idx], m, rng, tries=3, recency=1.5
    )
    fit = 1.0 - np.abs(clips.energy[cand] - users.energy[u[idx]][:, None]) / 2.0
    best = cand[np.arange(len(idx)), np.argmax(clips.quality[cand] + 0.6 * fit, axis=1)]
    item[idx[ok]] = best[ok]
    src[(src == 3) & (item < 0)] = 1

    # trending: recent and popular (best of four recent-biased draws), not personalised.
    idx = np.nonzero(item < 0)[0]
    src[idx] = 1
    avail = before[idx]
    back = (rng.random((len(idx), 4)) ** 3.0 * avail[:, None]).astype(np.int64)
    cand = np.clip(avail[:, None] - 1 - back, 0, m - 1)
    best = cand[np.arange(len(idx)), np.argmax(clips.popularity[cand], axis=1)]
    item[idx] = np.where(avail > 0, best, -1)

    # What a deployed feed never shows: own clips, blocked or muted authors, adult clips to teens.
    author = clips.author[np.maximum(item, 0)]
    block_keys = graph.blocks_user * n + graph.blocks_target
    keep = (
        (item >= 0)
        & (author != u)
        & ~np.isin(u * n + author, block_keys)
        & ~(users.is_teen[u] & (clips.maturity[np.maximum(item, 0)] == 2))
    )
    # ... nor a clip the user was already shown (first showing in time order wins).
    by_time = np.lexsort((pos_in_sess, start[imp_sess]))
    seen_key = np.where(keep, u * (m + 1) + item, -1)[by_time]
    _, first = np.unique(seen_key, return_index=True)
    first_shown = np.zeros(q, dtype=bool)
    first_shown[by_time[first]] = True
    keep &= first_shown
    # Positions count only what was shown: pages of ten within the session.
    kc = np.cumsum(keep) - keep
    shown_pos = kc - kc[sess_off[imp_sess]]

    # Ground-truth engagement.
    it = np.maximum(item, 0)
    aff = _affinity(
        users.pref, users.energy, clips.topic1, clips.topic2, clips.energy, clips.quality, u, it
    )
    follow_keys = graph.src * n + graph.dst
    already_follows = np.isin(u * n + author, follow_keys)
    a_eff = aff + 0.06 * already_follows
    viewed = rng.random(q) < 0.93
    mean_wf = (0.08 + 0.85 * a_eff**1.6) * (1.0 - 0.3 * (clips.duration[it] - 5.0) / 55.0)
    mean_wf = mean_wf.clip(0.03, 0.97)
    conc = 5.0
    wf = rng.beta(mean_wf * conc, (1.0 - mean_wf) * conc).clip(0.01, 1.0)
    ws = np.round(wf * clips.duration[it], 2)
    wf = np.round(ws / clips.duration[it], 4)

    def draw(logit: FloatArray) -> BoolArray:
        return np.asarray(rng.random(q) < 1.0 / (1.0 + np.exp(-logit)), dtype=np.bool_)

    c = a_eff - 0.5
    safety = clips.safety[it]
    report_base = np.where(
        safety == "violative", -1.6, np.where(safety == "borderline", -3.8, -8.5)
    )
    flags = {
        _EV_VIEW: viewed,
        _EV_SKIP: viewed & (wf < 0.2),
        _EV_LIKE: viewed & (wf > 0.25) & draw(-3.7 + 7.0 * c + 1.2 * (wf - 0.5)),
        _EV_COMMENT: viewed & draw(-5.4 + 5.0 * c),
        _EV_SHARE: viewed & draw(-5.3 + 6.0 * c),
        _EV_REMIX: viewed & draw(-6.8 + 5.0 * c + 1.2 * clips.generated[it]),
        _EV_FOLLOW: viewed & ~already_follows & draw(-4.8 + 6.0 * c),
        _EV_SEE_LESS: viewed & draw(-5.0 - 7.0 * c + 2.0 * users.is_teen[u] * clips.intensity[it]),
        _EV_REPORT: viewed & draw(report_base + 1.0 * users.is_teen[u]),
    }
    for k in flags:
        flags[k] &= keep

    # Timestamps: each impression starts after the previous one's watch plus a short gap.
    dwell = np.where(viewed, ws, 0.6) + rng.uniform(0.4, 3.0, size=q)
    dwell_us = np.where(keep, (dwell * _US).astype(np.int64), 0)
    cs = np.cumsum(dwell_us) - dwell_us
    imp_ts = start[imp_sess] + cs - cs[sess_off[imp_sess]]

    # Cut the log at n_events rows, whole impressions at a time (sessions are in random order).
    rows = keep.astype(np.int64) + sum(f.astype(np.int64) for f in flags.values())
    kept = np.cumsum(rows) <= cfg.n_events
    keep &= kept
    for k in flags:
        flags[k] &= kept

    imp_idx = [np.nonzero(keep)[0]]
    codes = [np.full(len(imp_idx[0]), _EV_IMPRESSION, dtype=np.int64)]
    for k, f in flags.items():
        where = np.nonzero(f)[0]
        imp_idx.append(where)
        codes.append(np.full(len(where), k, dtype=np.int64))
    ev_imp = np.concatenate(imp_idx)
    ev_code = np.concatenate(codes)
    ev_ts = (
        imp_ts[ev_imp]
        + (_EVENT_LAG_FRAC[ev_code] * ws[ev_imp] * _US).astype(np.int64)
        + (_EVENT_LAG_S[ev_code] * _US).astype(np.int64)
    )
    ev_ts = np.minimum(ev_ts, -1)
    order = np.lexsort((ev_code, ev_ts))
    ev_imp, ev_code, ev_ts = ev_imp[order], ev_code[order], ev_ts[order]
    is_view = ev_code == _EV_VIEW
    is_follow = ev_code == _EV_FOLLOW

    # Request ids: one per page of ten shown clips within a session.
    req_per_sess = (s_len + _PAGE_SIZE - 1) // _PAGE_SIZE
    req_off = np.concatenate([[0], np.cumsum(req_per_sess)])
    imp_req = req_off[imp_sess] + shown_pos // _PAGE_SIZE
    events: dict[str, Any] = {
        "n": len(ev_imp),
        "user": u[ev_imp],
        "item": item[ev_imp],
        "target": np.where(is_follow, author[ev_imp], -1),
        "code": ev_code,
        "ts_us": ev_ts,
        "session": imp_sess[ev_imp],
        "request": imp_req[ev_imp],
        "position": (shown_pos[ev_imp] % _PAGE_SIZE).astype(np.int32),
        "source": src[ev_imp],
        "watch_s": np.where(is_view, ws[ev_imp], np.nan),
        "watch_frac": np.where(is_view, wf[ev_imp], np.nan),
    }
    new_follows = {
        "src": u[ev_imp[is_follow]],
        "dst": author[ev_imp[is_follow]],
        "ts_us": ev_ts[is_follow],
    }
    return events, new_follows


def _datetimes(end: datetime, rel_us: IntArray, name: str) -> pl.Series:
    base = int((end - datetime(1970, 1, 1)) / timedelta(microseconds=1))
    return pl.Series(name, np.asarray(rel_us, dtype=np.int64) + base).cast(pl.Datetime("us"))


def _ids(prefix: str, values: IntArray, name: str) -> pl.Series:
    s = pl.Series(name, np.asarray(values, dtype=np.int64)).cast(pl.String)
    return (prefix + s).alias(name)


def _assemble(
    cfg: WorldConfig,
    users: _Users,
    graph: _Graph,
    clips: _Clips,
    ev: dict[str, Any],
    new_follows: dict[str, IntArray],
) -> World:
    end = cfg.end
    n, m = cfg.n_users, cfg.n_clips
    tz_names = pl.Series([z for z, _, _ in TIMEZONES], dtype=pl.String)
    bands = pl.Series(AGE_BANDS, dtype=pl.String)
    users_df = pl.DataFrame(
        {
            "user_id": users.ids,
            "age_band": bands.gather(users.band),
            "is_teen": users.is_teen,
            "timezone": tz_names.gather(users.tz),
            "settings": pl.Series(["{}"] * n, dtype=pl.String),
            "created_at": _datetimes(end, users.created_us, "created_at"),
        }
    )

    item_ids = np.arange(1, m + 1, dtype=np.int64)
    names = pl.Series([t.name for t in TOPICS], dtype=pl.String)
    topics = (
        pl.DataFrame(
            {
                "a": names.gather(clips.topic1),
                "b": names.gather(np.maximum(clips.topic2, 0)),
                "has": clips.topic2 >= 0,
            }
        )
        .select(pl.concat_list("a", pl.when("has").then("b")).list.drop_nulls())
        .to_series()
    )
    cameo = pl.Series(
        "cameo_user_ids",
        pa.ListArray.from_arrays(
            pa.array(clips.cameo_off, type=pa.int32()),
            pa.array(users.ids[clips.cameo_users], type=pa.int64()),
        ),
    )
    remix = np.where(clips.remix_of >= 0, clips.remix_of + 1, 0)
    zone_city = [ZONE_CITIES[z] for z, _, _ in TIMEZONES]
    city = [
        zone_city[z][a % 2]
        for z, a in zip(users.tz[clips.author].tolist(), clips.author.tolist(), strict=True)
    ]
    clips_df = pl.DataFrame(
        {
            "item_id": item_ids,
            "author_id": users.ids[clips.author],
            "caption": clips.caption,
            "topics": topics,
            "hashtags": clips.hashtags,
            "duration_s": clips.duration,
            "created_at": _datetimes(end, clips.created_us, "created_at"),
            "safety_label": pl.Series(clips.safety.tolist(), dtype=pl.String),
            "maturity": pl.Series(clips.maturity, dtype=pl.Int16),
            "is_generated": clips.generated,
            "remix_of": pl.Series(remix, dtype=pl.Int64),
            "cameo_user_ids": cameo,
            "prior_views": pl.Series(np.zeros(m, dtype=np.int64)),
            "prior_likes": pl.Series(np.zeros(m, dtype=np.int64)),
            "provenance": pl.Series(
                np.where(clips.generated, "generated:demo-world", "upload:demo-world").tolist(),
                dtype=pl.String,
            ),
            # Where the creator posts from, at city level (the location signal's clip side).
            "city": pl.Series(city, dtype=pl.String),
        }
    ).with_columns(pl.when(pl.col("remix_of") > 0).then(pl.col("remix_of")).alias("remix_of"))

    # Follows at "now": the graph plus follows made during the logged period.
    f_src = np.concatenate([graph.src, new_follows["src"]])
    f_dst = np.concatenate([graph.dst, new_follows["dst"]])
    f_ts = np.concatenate([graph.created_us, new_follows.get("ts_us", np.zeros(0, np.int64))])
    _, first = np.unique(f_src * n + f_dst, return_index=True)
    follows_df = pl.DataFrame(
        {
            "follower_id": users.ids[f_src[first]],
            "followee_id": users.ids[f_dst[first]],
            "created_at": _datetimes(end, f_ts[first], "created_at"),
        }
    )
    blocks_df = pl.DataFrame(
        {
            "user_id": users.ids[graph.blocks_user],
            "target_id": users.ids[graph.blocks_target],
            "kind": pl.Series(graph.blocks_kind.tolist(), dtype=pl.String),
            "created_at": _datetimes(end, graph.blocks_created_us, "created_at"),
        }
    )
    events_df = _events_frame(cfg, users, ev)
    return World(
        config=cfg,
        users=users_df,
        clips=clips_df,
        follows=follows_df,
        blocks=blocks_df,
        events=events_df,
        user_ids=users.ids,
        item_ids=item_ids,
        topic_names=tuple(t.name for t in TOPICS),
        user_topic_pref=users.pref,
        user_energy_pref=users.energy,
        clip_topic_idx=clips.topic1,
        clip_topic2_idx=clips.topic2,
        clip_energy=clips.energy,
        clip_quality=clips.quality,
        clip_intensity=clips.intensity,
    )


_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "user_id": pl.Int64(),
    "item_id": pl.Int64(),
    "target_user_id": pl.Int64(),
    "event_type": pl.String(),
    "ts": pl.Datetime("us"),
    "received_at": pl.Datetime("us"),
    "session_id": pl.String(),
    "request_id": pl.String(),
    "position": pl.Int32(),
    "pipeline": pl.String(),
    "source": pl.String(),
    "features": pl.String(),
    "propensity": pl.Float64(),
    "experiments": pl.String(),
    "watch_s": pl.Float64(),
    "watch_frac": pl.Float64(),
    "weight": pl.Float64(),
}


def _events_frame(cfg: WorldConfig, users: _Users, ev: dict[str, Any]) -> pl.DataFrame:
    k = int(ev["n"])
    if k == 0:
        return pl.DataFrame(schema=_EVENT_SCHEMA)
    seed = cfg.seed
    ts = _datetimes(cfg.end, ev["ts_us"], "ts")
    target = np.asarray(ev["target"])
    df = pl.DataFrame(
        {
            "event_id": _ids(f"demo{seed}-e", np.arange(k, dtype=np.int64), "event_id"),
            "user_id": users.ids[ev["user"]],
            "item_id": np.asarray(ev["item"], dtype=np.int64) + 1,
            "target_user_id": pl.Series(
                np.where(target >= 0, users.ids[np.maximum(target, 0)], 0), dtype=pl.Int64
            ),
            "event_type": pl.Series(_EVENT_NAMES, dtype=pl.String).gather(ev["code"]),
            "ts": ts,
            "received_at": ts.alias("received_at"),
            "session_id": _ids(f"demo{seed}-s", ev["session"], "session_id"),
            "request_id": _ids(f"demo{seed}-r", ev["request"], "request_id"),
            "position": pl.Series(ev["position"], dtype=pl.Int32),
            "pipeline": pl.repeat("demo", k, dtype=pl.String, eager=True),
            "source": pl.Series(SOURCES, dtype=pl.String).gather(ev["source"]),
            "features": pl.repeat(None, k, dtype=pl.String, eager=True),
            "propensity": pl.repeat(None, k, dtype=pl.Float64, eager=True),
            "experiments": pl.repeat(None, k, dtype=pl.String, eager=True),
            "watch_s": pl.Series(ev["watch_s"], dtype=pl.Float64, nan_to_null=True),
            "watch_frac": pl.Series(ev["watch_frac"], dtype=pl.Float64, nan_to_null=True),
            "weight": pl.repeat(None, k, dtype=pl.Float64, eager=True),
        }
    )
    return df.with_columns(
        pl.when(pl.col("target_user_id") > 0).then(pl.col("target_user_id")).alias("target_user_id")
    )


# Audiences the demo's featured adults choose (teens get no consent: theirs needs a linked
# parent's approval, and the demo world links no parents, so their cameo clips stay hidden).
CAMEO_AUDIENCE_SHARES: dict[str, float] = {"everyone": 0.7, "friends": 0.3}


def cameo_consents(world: World) -> pl.DataFrame:
    """Consent records (``cameo_consents`` rows) for the adults the world's clips feature.

    Clips feature friends of their author; without consent on record a clip showing someone
    reaches no one but that person, so the demo records consents for the featured adults
    (70% ``everyone``, 30% ``friends``), drawn from the world's seed.
    """
    featured = world.clips.select(pl.col("cameo_user_ids").explode().drop_nulls().unique())
    adults = world.users.filter(~pl.col("is_teen")).select("user_id")
    ids = np.sort(
        featured.join(adults, left_on="cameo_user_ids", right_on="user_id")[
            "cameo_user_ids"
        ].to_numpy()
    )
    rng = np.random.default_rng([world.config.seed, 0xCA3E0])
    names = list(CAMEO_AUDIENCE_SHARES)
    audience = rng.choice(np.array(names), size=len(ids), p=list(CAMEO_AUDIENCE_SHARES.values()))
    granted = world.config.end - timedelta(days=world.config.days)
    return pl.DataFrame(
        {
            "user_id": ids.astype(np.int64),
            "audience": audience.astype(str),
            "granted_at": [granted] * len(ids),
        },
        schema={"user_id": pl.Int64, "audience": pl.String, "granted_at": pl.Datetime("us")},
    )
