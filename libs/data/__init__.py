"""Readers for recorded market-data files (LOBSTER, Bitstamp L3) into numpy columns."""
