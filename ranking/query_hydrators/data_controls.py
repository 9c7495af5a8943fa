"""Query hydrator: the person's data controls, resolved once for the request."""

from __future__ import annotations

from ranking.data_controls import DataControlsService
from ranking.pipeline import FeedQuery


class DataControlsQueryHydrator:
    """Sets ``query.context.signals`` (:class:`~ranking.signals.SignalGate`): which signals
    this request may use and its city (the client's ``query.city``, else the profile's).

    Declared first in every product: the user-context hydrator already reads the gate (a
    taste vector without history or watch time), and so does every later component that uses
    a signal.
    """

    name = "data_controls"

    def __init__(self, controls: DataControlsService) -> None:
        self.controls = controls

    def hydrate(self, query: FeedQuery) -> None:
        """Resolve the gate from the stored choices, the person's defaults and the request."""
        query.context.signals = self.controls.gate(query.user_id, client_city=query.city)
