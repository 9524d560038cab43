"""bars: the OHLCV bar manager's service (nightly updates over NATS)."""
