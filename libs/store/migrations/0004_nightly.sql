-- Nightly bar updates (issue 4): every saved status of an update, newest version wins.
-- `body` is the whole status JSON (libs.bars.nightly.NightlyStatus) so it can be served after a
-- restart; the other columns are there to list and filter updates without parsing it.

CREATE TABLE IF NOT EXISTS {db}.nightly_updates
(
    request_id    String,
    version       UInt64,
    status        LowCardinality(String),
    started_at    DateTime64(9, 'UTC'),
    finished_at   Nullable(DateTime64(9, 'UTC')),
    symbols_count UInt32,
    is_complete   Bool,
    body          String                 CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY request_id;
