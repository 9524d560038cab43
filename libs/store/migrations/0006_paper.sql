-- Paper trading (issue 5): users and their profiles and encrypted exchange secrets, run settings
-- and state, per-check decision outcomes, broken pairs, and every movement of a run's cash.
-- Written by the recorder from `RunUpdate` events (proto/paper.py), except the user tables, which
-- the report service's API writes. Latest row wins (ReplacingMergeTree, read with FINAL).

ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS user_id String DEFAULT '';
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS opportunity_id String DEFAULT '';
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS detail String DEFAULT '' CODEC(ZSTD(3));
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS checks_run UInt32 DEFAULT 0;
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS checks_passed UInt32 DEFAULT 0;
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS net_edge_per_contract_micros Int64 DEFAULT 0;
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS size Int64 DEFAULT 0;
ALTER TABLE {db}.decisions ADD COLUMN IF NOT EXISTS trade_id String DEFAULT '';

ALTER TABLE {db}.paper_trades ADD COLUMN IF NOT EXISTS user_id String DEFAULT '';
ALTER TABLE {db}.paper_trades ADD COLUMN IF NOT EXISTS opportunity_id String DEFAULT '';
ALTER TABLE {db}.paper_trades ADD COLUMN IF NOT EXISTS broken UInt8 DEFAULT 0;
ALTER TABLE {db}.paper_trades ADD COLUMN IF NOT EXISTS unhedged_size Int64 DEFAULT 0;
ALTER TABLE {db}.paper_trades ADD COLUMN IF NOT EXISTS exposure_micros Int64 DEFAULT 0;
ALTER TABLE {db}.paper_trades ADD COLUMN IF NOT EXISTS net_edge_per_contract_micros Int64 DEFAULT 0;

ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS user_id String DEFAULT '';
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS notes String DEFAULT '';
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS opportunity_keys Array(String) DEFAULT [];
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS filters_json String DEFAULT '{}';
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS settlement_delay_ns Int64 DEFAULT 0;
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS duration_minutes Float64 DEFAULT 0;
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS ends_at Nullable(DateTime64(9, 'UTC'));
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS validation LowCardinality(String) DEFAULT '';
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS keys_present Array(String) DEFAULT [];
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS stop_reason LowCardinality(String) DEFAULT '';
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS exposure_micros Int64 DEFAULT 0;
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS unsettled_micros Int64 DEFAULT 0;
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS broken Int64 DEFAULT 0;
ALTER TABLE {db}.paper_runs ADD COLUMN IF NOT EXISTS version UInt64 DEFAULT 0;

CREATE TABLE IF NOT EXISTS {db}.paper_balance_changes
(
    id             String,
    ts             DateTime64(9, 'UTC')   CODEC(Delta, ZSTD(1)),
    run_id         LowCardinality(String),
    user_id        String,
    kind           LowCardinality(String),
    trade_id       String,
    amount_micros  Int64,
    balance_micros Int64,
    pnl_micros     Int64
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (run_id, id);

CREATE TABLE IF NOT EXISTS {db}.users
(
    user_id        String,
    ts             DateTime64(9, 'UTC'),
    name           String,
    api_key_hash   String,
    api_key_prefix String,
    created_at     DateTime64(9, 'UTC'),
    disabled       UInt8
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS {db}.user_profiles
(
    user_id             String,
    ts                  DateTime64(9, 'UTC'),
    min_net_edge_micros Int64,
    max_leg_micros      Int64,
    daily_cap_micros    Int64
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS {db}.user_secrets
(
    user_id    String,
    venue      LowCardinality(String),
    ts         DateTime64(9, 'UTC'),
    fields     Array(String),
    ciphertext String,
    deleted    UInt8
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (user_id, venue);
