-- lens_raw_irtt_rows(day, region): the raw rows of a partition, read from its landing files
-- (nothing is copied into the warehouse: the hour CSVs are the raw data, immutable, and DuckDB
-- reads them faster than it could re-store them). The rows are those lens_ingest cleaned: a
-- truncated last line is skipped, and so are the rows whose 10 ms tick (half to even) falls
-- outside the day, i.e. outside [midnight - 5 ms, next midnight - 5 ms).
--   SELECT * FROM lens_raw_irtt_rows(DATE '2023-11-01', 'chicago')
-- $root is the landing root, written in as a quoted literal when the macro is (re)created.
CREATE OR REPLACE MACRO lens_raw_irtt_rows(day, region) AS TABLE
SELECT CAST(day AS DATE) AS day, CAST(region AS VARCHAR) AS region, "timestamp", rtt, uplink, downlink
FROM read_csv(
    $root || '/' || region || '/' || strftime(CAST(day AS DATE), '%Y-%m-%d') || '/irtt-10ms-1h-*.csv',
    header = true,
    auto_detect = false,
    columns = {'timestamp': 'BIGINT', 'rtt': 'DOUBLE', 'uplink': 'DOUBLE', 'downlink': 'DOUBLE'},
    ignore_errors = true
)
WHERE "timestamp" >= epoch_ns(CAST(day AS TIMESTAMP)) - 5000000
  AND "timestamp" < epoch_ns(CAST(day AS TIMESTAMP)) + 86400000000000 - 5000000
