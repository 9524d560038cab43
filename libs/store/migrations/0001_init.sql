-- MarketTwin schema v1: market data (MergeTree) and events keyed by id (ReplacingMergeTree).
-- `{db}` is replaced with the configured database; the same DDL runs on chDB and on a server.
-- Times are DateTime64(9, 'UTC') from UTC nanoseconds; prices Int64 in 1/10,000 USD;
-- money Int64 micro-USD. Market data is ordered by (venue, instrument, ts); its key ends in
-- (batch_id, row), and the engine is ReplacingMergeTree, so a batch redelivered after a
-- recorder crash (possibly grouped differently) collapses to one row per (batch_id, row)
-- under FINAL. Tables also keep a deduplication window: a retried identical insert with the
-- same insert_deduplication_token is not stored at all.

CREATE TABLE IF NOT EXISTS {db}.book_tops
(
    ts         DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    venue      LowCardinality(String),
    instrument LowCardinality(String),
    source     LowCardinality(String),
    bid_px     Int64                  CODEC(Delta, ZSTD(1)),
    bid_sz     Int64                  CODEC(T64, ZSTD(1)),
    ask_px     Int64                  CODEC(Delta, ZSTD(1)),
    ask_sz     Int64                  CODEC(T64, ZSTD(1)),
    recv_ts    DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    batch_id   String                 CODEC(ZSTD(1)),
    row        UInt32                 CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (venue, instrument, ts, batch_id, row)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.md_trades
(
    ts         DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    venue      LowCardinality(String),
    instrument LowCardinality(String),
    source     LowCardinality(String),
    px         Int64                  CODEC(Delta, ZSTD(1)),
    size       Int64                  CODEC(T64, ZSTD(1)),
    aggressor  Int8                   CODEC(ZSTD(1)),
    batch_id   String                 CODEC(ZSTD(1)),
    row        UInt32                 CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (venue, instrument, ts, batch_id, row)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.opportunities
(
    id                           String,
    ts                           DateTime64(9, 'UTC')             CODEC(Delta, ZSTD(1)),
    opportunity_id               String,
    opportunity_key              LowCardinality(String),
    strategy                     LowCardinality(String),
    status                       LowCardinality(String),
    size                         Int64,
    gross_cost_micros            Int64,
    fees_micros                  Int64,
    net_edge_micros              Int64,
    net_edge_per_contract_micros Int64,
    book_ts                      DateTime64(9, 'UTC')             CODEC(Delta, ZSTD(1)),
    opened_at                    DateTime64(9, 'UTC')             CODEC(Delta, ZSTD(1)),
    closed_at                    Nullable(DateTime64(9, 'UTC')),
    legs_json                    String                           CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.intents
(
    id                           String,
    ts                           DateTime64(9, 'UTC')             CODEC(Delta, ZSTD(1)),
    opportunity_id               String,
    opportunity_key              LowCardinality(String),
    strategy                     LowCardinality(String),
    size                         Int64,
    net_edge_micros              Int64,
    net_edge_per_contract_micros Int64,
    book_ts                      DateTime64(9, 'UTC')             CODEC(Delta, ZSTD(1)),
    legs_json                    String                           CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.decisions
(
    id              String,
    ts              DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    run_id          LowCardinality(String),
    intent_id       String,
    opportunity_key LowCardinality(String),
    decision_source LowCardinality(String),
    taken           UInt8,
    reason          String                 CODEC(ZSTD(3)),
    checks_json     String                 CODEC(ZSTD(3)),
    intent_ts       DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    book_ts         DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.paper_trades
(
    id              String,
    ts              DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    run_id          LowCardinality(String),
    intent_id       String,
    decision_id     String,
    opportunity_key LowCardinality(String),
    requested_size  Int64,
    matched_size    Int64,
    fill_pct        Float64,
    cost_micros     Int64,
    fee_micros      Int64,
    payout_micros   Int64,
    pnl_micros      Int64,
    executed_at     DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    settled_at      DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    legs_json       String                 CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.paper_runs
(
    run_id              String,
    ts                  DateTime64(9, 'UTC'),
    state               LowCardinality(String),
    label               String,
    starting_micros     Int64,
    balance_micros      Int64,
    pnl_micros          Int64,
    fees_micros         Int64,
    decisions           Int64,
    taken               Int64,
    trades              Int64,
    min_net_edge_micros Int64,
    max_leg_micros      Int64,
    daily_cap_micros    Int64,
    started_at          DateTime64(9, 'UTC'),
    stopped_at          Nullable(DateTime64(9, 'UTC'))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY run_id;

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    ts         DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    consumer   LowCardinality(String),
    subject    LowCardinality(String),
    reason     String                 CODEC(ZSTD(3)),
    deliveries UInt32,
    data       String                 CODEC(ZSTD(3))
)
ENGINE = MergeTree
ORDER BY (consumer, ts)
SETTINGS non_replicated_deduplication_window = 10000;
