"""NATS access for every service: connection and streams, pull consumers, a local server."""

from libs.bus.client import Bus, subscriptions_live
from libs.bus.consumer import PullConsumer
from libs.bus.server import LocalNatsServer, NatsServerError, free_port

__all__ = ["Bus", "LocalNatsServer", "NatsServerError", "PullConsumer", "free_port", "subscriptions_live"]
