"""Settings from environment variables (`MT_*`, plus `NATS_URL` and `CLICKHOUSE_URL`).

Defaults suit the embedded mode: a local nats-server and chDB under `./.markettwin/`.
A value that does not parse raises a ConfigError naming the variable and the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec


class ConfigError(ValueError):
    """An environment variable with a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a MarketTwin process reads from its environment."""

    home: Path = Path(".markettwin")
    """MT_HOME: where the embedded mode keeps NATS and chDB data."""
    nats_url: str | None = None
    """NATS_URL: an existing NATS server; unset in embedded mode (one is started)."""
    clickhouse_url: str | None = None
    """CLICKHOUSE_URL: a ClickHouse server (http://user:pass@host:8123/db); unset = chDB."""
    clickhouse_database: str = "markettwin"
    """MT_CLICKHOUSE_DATABASE: the database every table lives in."""
    log_format: str = "console"
    """MT_LOG_FORMAT: `console` (readable) or `json` (containers)."""
    log_level: str = "info"
    """MT_LOG_LEVEL: debug, info, warning, error."""
    # ingest
    ingest_sources: str = "synthetic"
    """MT_INGEST_SOURCES: comma list of sources the ingest service runs: synthetic, replay, or none."""
    synth_rate: float = 20.0
    """MT_SYNTH_RATE: synthetic book updates per second per venue."""
    synth_seed: int = 7
    """MT_SYNTH_SEED: seed of the synthetic market (same seed, same market)."""
    replay_speed: float = 0.0
    """MT_REPLAY_SPEED: replay at N x real time; 0 = as fast as possible."""
    # live venues (read-only market data)
    venues_poll_s: float = 2.0
    """MT_VENUES_POLL_S: seconds between two polls of one market's book."""
    venues_rate_per_s: float = 5.0
    """MT_VENUES_RATE_PER_S: most HTTP requests per second to one venue (token bucket)."""
    venues_record: bool = False
    """MT_VENUES_RECORD: also publish every venue response as received (`md.raw.<venue>`)."""
    markets_file: Path | None = None
    """MT_MARKETS_FILE: the market mapping file (cross-venue pairs) the live sources follow."""
    polymarket_host: str = "https://clob.polymarket.com"
    """MT_POLYMARKET_HOST: the Polymarket CLOB API."""
    kalshi_host: str = ""
    """MT_KALSHI_HOST: the Kalshi trade API base URL ('' = production, or demo with MT_KALSHI_USE_DEMO)."""
    kalshi_use_demo: bool = False
    """MT_KALSHI_USE_DEMO: use Kalshi's demo environment when no host is given."""
    kalshi_api_key_id: str = ""
    """MT_KALSHI_API_KEY_ID: Kalshi API key id, for authenticated calls (balance)."""
    kalshi_private_key_path: Path | None = None
    """MT_KALSHI_PRIVATE_KEY_PATH: PEM file of the Kalshi RSA private key."""
    venue_hosts_allowed: str = ""
    """MT_VENUE_HOSTS_ALLOWED: comma-separated extra venue API base URLs (http allowed) a user may give as
    the `host` of their Kalshi/Polymarket secrets, besides the venues' own https hosts; for tests and
    private mirrors (live validation calls that host from the paper service: never let users pick any URL)."""
    # OHLCV bar manager
    bars_providers: str = "polygon,fmp,tiingo"
    """MT_BARS_PROVIDERS: bar providers in priority order (those with an API key are used)."""
    polygon_api_key: str = ""
    """MT_POLYGON_API_KEY: Polygon.io API key."""
    polygon_host: str = "https://api.polygon.io"
    """MT_POLYGON_HOST: Polygon.io REST base URL."""
    polygon_requests_per_minute: float = 5.0
    """MT_POLYGON_REQUESTS_PER_MINUTE: Polygon rate limit (5 on the free plan)."""
    fmp_api_key: str = ""
    """MT_FMP_API_KEY: Financial Modeling Prep API key."""
    fmp_host: str = "https://financialmodelingprep.com"
    """MT_FMP_HOST: Financial Modeling Prep base URL."""
    tiingo_api_key: str = ""
    """MT_TIINGO_API_KEY: Tiingo API key."""
    tiingo_host: str = "https://api.tiingo.com"
    """MT_TIINGO_HOST: Tiingo base URL."""
    fmp_requests_per_minute: float = 300.0
    """MT_FMP_REQUESTS_PER_MINUTE: FMP rate limit (300 = the Starter plan; the free plan allows 250 a day)."""
    tiingo_requests_per_minute: float = 8.0
    """MT_TIINGO_REQUESTS_PER_MINUTE: Tiingo rate limit (8 a minute stays under the free plan's 500 an hour)."""
    bars_asset_overrides: str = ""
    """MT_BARS_ASSET_OVERRIDES: asset classes the symbol rule gets wrong, e.g. `BTCUSD=crypto,XAUUSD=forex`."""
    bars_max_concurrent_symbols: int = 5
    """MT_BARS_MAX_CONCURRENT_SYMBOLS: symbols a nightly update works on at once."""
    bars_default_symbols: str = "AAPL,GOOGL,MSFT,TSLA,AMZN"
    """MT_BARS_DEFAULT_SYMBOLS: what a nightly update covers when the request names none."""
    bars_history_days: int = 30
    """MT_BARS_HISTORY_DAYS: how far back a nightly update looks for a symbol with no data."""
    # detect
    detect_sync_timeout_ms: float = 1_000.0
    """MT_DETECT_SYNC_TIMEOUT_MS: how long detect waits for the rest of a sync group of books."""
    min_edge_cents: float = 0.5
    """MT_DETECT_MIN_EDGE_CENTS: net edge per contract (after fees) that emits an intent."""
    max_pair_size: int = 10_000
    """MT_DETECT_MAX_SIZE: most contracts an opportunity is sized to."""
    polymarket_fee_rate: float = 0.0
    """MT_POLYMARKET_FEE_RATE: taker fee rate for Polymarket markets without their own."""
    polymarket_fee_exponent: float = 1.0
    """MT_POLYMARKET_FEE_EXPONENT: exponent of p(1-p) in Polymarket's taker fee."""
    # paper
    paper_starting_usd: float = 10_000.0
    """MT_PAPER_STARTING_USD: virtual balance of the default paper run."""
    paper_min_edge_cents: float = 0.5
    """MT_PAPER_MIN_EDGE_CENTS: a run's minimum net edge per contract."""
    paper_max_leg_usd: float = 1_000.0
    """MT_PAPER_MAX_LEG_USD: most a run spends on one leg of one intent."""
    paper_daily_cap_usd: float = 5_000.0
    """MT_PAPER_DAILY_CAP_USD: most a run spends per (market-time) UTC day."""
    paper_latency_ms: float = 50.0
    """MT_PAPER_LATENCY_MS: execution latency: legs fill on the book as of intent time + this."""
    paper_settlement_delay_s: float = 2.0
    """MT_PAPER_SETTLEMENT_DELAY_S: settled_at = executed_at + this."""
    paper_leg_gap_ms: float = 20.0
    """MT_PAPER_LEG_GAP_MS: the second leg fills on the book this long (market time) after the first."""
    paper_validation: str = "bus"
    """MT_PAPER_VALIDATION: exchange validation: `bus` (latest books and market status on the bus),
    `live` (the venues' own APIs with the user's keys, read-only) or `off`."""
    paper_max_book_age_s: float = 60.0
    """MT_PAPER_MAX_BOOK_AGE_S: a leg's book older than this (market time) fails exchange validation."""
    paper_book_lookback_s: float = 600.0
    """MT_PAPER_BOOK_LOOKBACK_S: how far back a (re)started paper service reads books from the MD stream."""
    paper_max_runs_per_user: int = 5
    """MT_PAPER_MAX_RUNS_PER_USER: active runs one user may have at once."""
    paper_max_duration_minutes: float = 7 * 24 * 60
    """MT_PAPER_MAX_DURATION_MIN: the hard cap on a run's life (7 days)."""
    paper_default_run: bool = True
    """MT_PAPER_DEFAULT_RUN: keep one run of the built-in `default` user going (the demo's run)."""
    paper_hot_path: bool = True
    """MT_PAPER_HOT_PATH: decide intents as they arrive over core NATS (JetStream still delivers every
    one, for durability and exactly-once); off: decide them as JetStream delivers them."""
    jwt_secret: str = ""
    """MT_JWT_SECRET: HS256 key for API tokens; empty: generated once into MT_HOME/jwt.secret."""
    jwt_ttl_s: float = 900.0
    """MT_JWT_TTL_S: lifetime of a token from POST /auth/token."""
    secrets_key: str = ""
    """MT_SECRETS_KEY: Fernet key encrypting users' exchange secrets; empty: MT_HOME/secrets.key."""
    admin_token: str = ""
    """MT_ADMIN_TOKEN: bearer token for POST /admin/users; empty: generated into MT_HOME/admin.token."""
    api_url: str = ""
    """MT_API_URL: where `markettwin users` finds the HTTP API (default http://MT_HTTP_HOST:MT_HTTP_PORT)."""
    http_host: str = "127.0.0.1"
    """MT_HTTP_HOST: the address report's HTTP binds; containers set 0.0.0.0."""
    http_port: int = 8080
    """MT_HTTP_PORT: the report service's HTTP port (0 = no HTTP)."""
    # recorder
    ack_wait_s: float = 30.0
    """MT_ACK_WAIT_S: a message not acked within this is redelivered (e.g. after a crash)."""
    recorder_batch: int = 2_000
    """MT_RECORDER_BATCH: messages fetched per pull (each may carry many rows)."""
    # sim
    sim_concurrency: int = 0
    """MT_SIM_CONCURRENCY: simulation runs a sim worker process runs at once (0: one per CPU)."""
    sim_ack_wait_s: float = 900.0
    """MT_SIM_ACK_WAIT_S: a task a worker took but did not finish returns to the queue after this."""


_ENV: dict[str, tuple[str, type]] = {
    "MT_HOME": ("home", Path),
    "NATS_URL": ("nats_url", str),
    "CLICKHOUSE_URL": ("clickhouse_url", str),
    "MT_CLICKHOUSE_DATABASE": ("clickhouse_database", str),
    "MT_LOG_FORMAT": ("log_format", str),
    "MT_LOG_LEVEL": ("log_level", str),
    "MT_INGEST_SOURCES": ("ingest_sources", str),
    "MT_SYNTH_RATE": ("synth_rate", float),
    "MT_SYNTH_SEED": ("synth_seed", int),
    "MT_REPLAY_SPEED": ("replay_speed", float),
    "MT_VENUES_POLL_S": ("venues_poll_s", float),
    "MT_VENUES_RATE_PER_S": ("venues_rate_per_s", float),
    "MT_VENUES_RECORD": ("venues_record", bool),
    "MT_MARKETS_FILE": ("markets_file", Path),
    "MT_POLYMARKET_HOST": ("polymarket_host", str),
    "MT_KALSHI_HOST": ("kalshi_host", str),
    "MT_KALSHI_USE_DEMO": ("kalshi_use_demo", bool),
    "MT_KALSHI_API_KEY_ID": ("kalshi_api_key_id", str),
    "MT_KALSHI_PRIVATE_KEY_PATH": ("kalshi_private_key_path", Path),
    "MT_VENUE_HOSTS_ALLOWED": ("venue_hosts_allowed", str),
    "MT_BARS_PROVIDERS": ("bars_providers", str),
    "MT_POLYGON_API_KEY": ("polygon_api_key", str),
    "MT_POLYGON_HOST": ("polygon_host", str),
    "MT_POLYGON_REQUESTS_PER_MINUTE": ("polygon_requests_per_minute", float),
    "MT_FMP_API_KEY": ("fmp_api_key", str),
    "MT_FMP_HOST": ("fmp_host", str),
    "MT_TIINGO_API_KEY": ("tiingo_api_key", str),
    "MT_TIINGO_HOST": ("tiingo_host", str),
    "MT_FMP_REQUESTS_PER_MINUTE": ("fmp_requests_per_minute", float),
    "MT_TIINGO_REQUESTS_PER_MINUTE": ("tiingo_requests_per_minute", float),
    "MT_BARS_ASSET_OVERRIDES": ("bars_asset_overrides", str),
    "MT_BARS_MAX_CONCURRENT_SYMBOLS": ("bars_max_concurrent_symbols", int),
    "MT_BARS_DEFAULT_SYMBOLS": ("bars_default_symbols", str),
    "MT_BARS_HISTORY_DAYS": ("bars_history_days", int),
    "MT_DETECT_SYNC_TIMEOUT_MS": ("detect_sync_timeout_ms", float),
    "MT_DETECT_MIN_EDGE_CENTS": ("min_edge_cents", float),
    "MT_DETECT_MAX_SIZE": ("max_pair_size", int),
    "MT_POLYMARKET_FEE_RATE": ("polymarket_fee_rate", float),
    "MT_POLYMARKET_FEE_EXPONENT": ("polymarket_fee_exponent", float),
    "MT_PAPER_STARTING_USD": ("paper_starting_usd", float),
    "MT_PAPER_MIN_EDGE_CENTS": ("paper_min_edge_cents", float),
    "MT_PAPER_MAX_LEG_USD": ("paper_max_leg_usd", float),
    "MT_PAPER_DAILY_CAP_USD": ("paper_daily_cap_usd", float),
    "MT_PAPER_LATENCY_MS": ("paper_latency_ms", float),
    "MT_PAPER_SETTLEMENT_DELAY_S": ("paper_settlement_delay_s", float),
    "MT_PAPER_LEG_GAP_MS": ("paper_leg_gap_ms", float),
    "MT_PAPER_VALIDATION": ("paper_validation", str),
    "MT_PAPER_MAX_BOOK_AGE_S": ("paper_max_book_age_s", float),
    "MT_PAPER_BOOK_LOOKBACK_S": ("paper_book_lookback_s", float),
    "MT_PAPER_MAX_RUNS_PER_USER": ("paper_max_runs_per_user", int),
    "MT_PAPER_MAX_DURATION_MIN": ("paper_max_duration_minutes", float),
    "MT_PAPER_DEFAULT_RUN": ("paper_default_run", bool),
    "MT_PAPER_HOT_PATH": ("paper_hot_path", bool),
    "MT_JWT_SECRET": ("jwt_secret", str),
    "MT_JWT_TTL_S": ("jwt_ttl_s", float),
    "MT_SECRETS_KEY": ("secrets_key", str),
    "MT_ADMIN_TOKEN": ("admin_token", str),
    "MT_API_URL": ("api_url", str),
    "MT_HTTP_HOST": ("http_host", str),
    "MT_HTTP_PORT": ("http_port", int),
    "MT_ACK_WAIT_S": ("ack_wait_s", float),
    "MT_RECORDER_BATCH": ("recorder_batch", int),
    "MT_SIM_CONCURRENCY": ("sim_concurrency", int),
    "MT_SIM_ACK_WAIT_S": ("sim_ack_wait_s", float),
}

_CHOICES = {
    "log_format": {"console", "json"},
    "log_level": {"debug", "info", "warning", "error"},
    "paper_validation": {"off", "bus", "live"},
}
_POSITIVE = {
    "venues_poll_s",
    "venues_rate_per_s",
    "polygon_requests_per_minute",
    "bars_max_concurrent_symbols",
    "bars_history_days",
    "synth_rate",
    "max_pair_size",
    "recorder_batch",
    "detect_sync_timeout_ms",
    "ack_wait_s",
    "sim_ack_wait_s",
    "paper_max_runs_per_user",
    "paper_max_duration_minutes",
    "paper_max_book_age_s",
    "jwt_ttl_s",
}
"""Fields where zero makes no sense (a rate, a size, a batch, a wait)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(raw: str) -> bool:
    """1/true/yes/on or 0/false/no/off, any case; anything else is a ValueError."""
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(raw)


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from `env` (default: os.environ); keyword overrides win."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for var, (field, kind) in _ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        try:
            value = parse_bool(raw) if kind is bool else kind(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
        if field in _CHOICES and value not in _CHOICES[field]:
            raise ConfigError(f"{var}={raw!r} must be one of {sorted(_CHOICES[field])}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{var}={raw!r} must be a finite number")
        if isinstance(value, (int, float)) and value < 0:
            raise ConfigError(f"{var}={raw!r} must not be negative")
        if field in _POSITIVE and value == 0:
            raise ConfigError(f"{var}={raw!r} must be greater than 0")
        values[field] = value
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
