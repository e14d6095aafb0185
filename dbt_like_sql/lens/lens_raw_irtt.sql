-- lens_raw_irtt: one day x region of LENS irtt hour files, as read (nothing cleaned yet).
-- Bound parameters: $files (list of paths), $day (DATE), $region (VARCHAR).
-- Malformed lines land in the reject tables named here; netassets/lens/ingest.py turns them into errors
-- naming file, line and column (or drops a truncated last line, counted). Rows whose
-- timestamp rounds outside the day are dropped, and counted, there too.
SELECT
    CAST($day AS DATE)       AS day,
    CAST($region AS VARCHAR) AS region,
    "timestamp",
    rtt,
    uplink,
    downlink
FROM read_csv(
    $files,
    header = true,
    auto_detect = false,
    columns = {'timestamp': 'BIGINT', 'rtt': 'DOUBLE', 'uplink': 'DOUBLE', 'downlink': 'DOUBLE'},
    store_rejects = true,
    rejects_scan = 'lens_reject_scans',
    rejects_table = 'lens_rejects'
)
