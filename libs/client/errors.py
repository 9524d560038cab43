"""The client's one error type."""

from __future__ import annotations


class SimulationError(ValueError):
    """The simulation API refused a request (the message is the server's) or could not be reached."""
