"""OHLCV bars: file import, resampling, calendars and the bar manager's building blocks.

`assets` (asset class of a symbol and its overrides, timeframes and their lengths), `schema` (the
bar frame), `timeutil` (New York zone, ns <-> datetime, request dates), `limits` (request sizes),
`calendars` (trading sessions per asset class), `resample` (1min to 5min ... daily, anchored on
session opens), `store` (the `ohlcv` table), `completeness` (expected vs stored minutes, gaps, the
report), `importer` and `files` (bar files), `providers` (HTTP bar sources) and `nightly` (the
update workflow).
"""
