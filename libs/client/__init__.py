"""The MarketTwin Python client: `MarketTwin(nats_url).simulation` drives simulation jobs."""

from libs.client.client import MarketTwin
from libs.client.errors import SimulationError

__all__ = ["MarketTwin", "SimulationError"]
