-- MarketTwin schema v2: simulation calibrations, jobs, run statuses and run results.
-- Every table is a ReplacingMergeTree keyed so that a redelivered event (a recorder crash
-- between insert and ack, a worker re-running a task) collapses under FINAL: a sim id names
-- its inputs and the engine version, so a rerun writes identical rows under the same key.
-- Result files are one table each, keyed by (sim_id, row); `sim_files` lists which files
-- (and parts of files) of a sim are stored, so a reader knows a file is whole. A calibration is
-- kept whole as MessagePack (JSON has no NaN, and a statistic may be NaN).

CREATE TABLE IF NOT EXISTS {db}.sim_calibrations
(
    symbol           String,
    cal_date         Date,
    cal_hash         String,
    market           LowCardinality(String),
    stage            LowCardinality(String),
    status           LowCardinality(String),
    source           String,
    created_at       DateTime64(9, 'UTC'),
    calibration      String                 CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (symbol, cal_date, cal_hash);

CREATE TABLE IF NOT EXISTS {db}.sim_jobs
(
    job_id       String,
    ts           DateTime64(9, 'UTC'),
    symbol       String,
    cal_date     Date,
    n_runs       UInt32,
    seed         Int64,
    scenario     LowCardinality(String),
    cached       UInt8,
    request      String                 CODEC(ZSTD(3)),
    sim_ids      Array(String)          CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY job_id;

-- One row per (job, sim): the latest state. `version` ranks the state before the time
-- (queued < running < completed = error), so a late "running" never hides a finished run.
CREATE TABLE IF NOT EXISTS {db}.sim_status
(
    job_id   String,
    sim_id   String,
    ts       DateTime64(9, 'UTC'),
    version  UInt64,
    state    LowCardinality(String),
    error    String                 CODEC(ZSTD(3)),
    INDEX sim_id_idx sim_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (job_id, sim_id);

CREATE TABLE IF NOT EXISTS {db}.sim_files
(
    sim_id   String,
    file     LowCardinality(String),
    part     UInt32,
    n_parts  UInt32,
    row0     UInt64,
    n_rows   UInt64,
    job_id   String,
    ts       DateTime64(9, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (sim_id, file, part);

CREATE TABLE IF NOT EXISTS {db}.sim_metrics
(
    sim_id   String,
    pos      UInt32,
    name     LowCardinality(String),
    value    Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (sim_id, pos);

CREATE TABLE IF NOT EXISTS {db}.sim_mid_price_by_min
(
    sim_id   String,
    row      UInt32,
    ts       DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    mid      Float64                CODEC(Gorilla, ZSTD(1)),
    volume   Int64                  CODEC(T64, ZSTD(1)),
    n_trades Int64                  CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (sim_id, row);

CREATE TABLE IF NOT EXISTS {db}.sim_trades
(
    sim_id    String,
    row       UInt32,
    ts        DateTime64(9, 'UTC')  CODEC(DoubleDelta, ZSTD(1)),
    price     Int64                 CODEC(Delta, ZSTD(1)),
    qty       Int64                 CODEC(T64, ZSTD(1)),
    aggressor Int64                 CODEC(T64, ZSTD(1)),
    is_algo   Int64                 CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (sim_id, row);

CREATE TABLE IF NOT EXISTS {db}.sim_algo_fills
(
    sim_id   String,
    row      UInt32,
    ts       DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    price    Int64                  CODEC(Delta, ZSTD(1)),
    qty      Int64                  CODEC(T64, ZSTD(1)),
    side     Int64                  CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (sim_id, row);

CREATE TABLE IF NOT EXISTS {db}.sim_l1
(
    sim_id   String,
    row      UInt32,
    ts       DateTime64(9, 'UTC')   CODEC(DoubleDelta, ZSTD(1)),
    bid_px   Int64                  CODEC(Delta, ZSTD(1)),
    bid_sz   Int64                  CODEC(T64, ZSTD(1)),
    ask_px   Int64                  CODEC(Delta, ZSTD(1)),
    ask_sz   Int64                  CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (sim_id, row);
