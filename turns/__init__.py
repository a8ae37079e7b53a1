"""Turns: replies the server writes as jobs of their own, which clients start, watch and stop.

``turn.Turn`` is one reply (its upstream call, its reply, its journal, its watchers);
``log.EventLog`` its numbered events; ``registry.TurnRegistry`` the running turns by chat;
``request`` what LM Studio is asked. Nothing here knows HTTP handlers: they are watchers.
"""

from .registry import TurnRegistry
from .turn import StarterLeft, Stopped, Turn

__all__ = ["StarterLeft", "Stopped", "Turn", "TurnRegistry"]
