-- Market facts from the live venues (issue 4): title, status, tick grid, minimum order and fee
-- schedule per instrument (proto.events.MarketInfo). The latest row per (venue, instrument) wins:
-- ReplacingMergeTree(ts), read with FINAL. Prices are integer units of 1/10,000 USD.

CREATE TABLE IF NOT EXISTS {db}.market_info
(
    venue              LowCardinality(String),
    instrument         String,
    ts                 DateTime64(9, 'UTC'),
    id                 String,
    market_id          String,
    source             LowCardinality(String),
    title              String,
    status             LowCardinality(String),
    tick_size          Int64,
    tick_ranges_json   String,
    min_order_size     Float64,
    close_ts           Nullable(DateTime64(9, 'UTC')),
    expiration_ts      Nullable(DateTime64(9, 'UTC')),
    neg_risk           Nullable(Bool),
    base_fee_bps       Nullable(Int64),
    maker_base_fee_bps Nullable(Int64),
    taker_fee_rate     String,
    fee_exponent       String,
    fees_enabled       Nullable(Bool),
    fee_note           String
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (venue, instrument);
