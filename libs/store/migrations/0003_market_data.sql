-- Market data, issue 4: OHLCV bars (all timeframes, one table) and raw venue responses.
-- Bars are keyed by (symbol, timeframe, ts) in a ReplacingMergeTree versioned by updated_at,
-- so re-importing or re-fetching a day replaces it instead of doubling it (read with FINAL).
-- Prices and volume are Float64 as the provider quotes them (see proto.events.BarBatch).

CREATE TABLE IF NOT EXISTS {db}.ohlcv
(
    symbol     LowCardinality(String),
    timeframe  LowCardinality(String),
    ts         DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    open       Float64                CODEC(Gorilla, ZSTD(1)),
    high       Float64                CODEC(Gorilla, ZSTD(1)),
    low        Float64                CODEC(Gorilla, ZSTD(1)),
    close      Float64                CODEC(Gorilla, ZSTD(1)),
    volume     Float64                CODEC(Gorilla, ZSTD(1)),
    venue      LowCardinality(String),
    source     LowCardinality(String),
    updated_at DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY (timeframe, toYear(ts))
ORDER BY (symbol, timeframe, ts);

-- Venue responses exactly as received (HTTP bodies, websocket frames): a recording that
-- replays through the live parser. Keyed like other market data down to (batch_id, row).
CREATE TABLE IF NOT EXISTS {db}.md_raw
(
    ts        DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    venue     LowCardinality(String),
    source    LowCardinality(String),
    endpoint  String                 CODEC(ZSTD(3)),
    status    UInt16,
    body      String                 CODEC(ZSTD(3)),
    batch_id  String                 CODEC(ZSTD(1)),
    row       UInt32                 CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (venue, ts, batch_id, row)
SETTINGS non_replicated_deduplication_window = 10000;
