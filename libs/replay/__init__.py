"""Replay of recorded market data (LOBSTER, Bitstamp L3, OHLCV bar files) as the events a live feed puts on the bus."""
