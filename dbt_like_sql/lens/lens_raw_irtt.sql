-- lens_raw_irtt: one day x region of LENS irtt hour files, as read (nothing cleaned yet).
-- Bound parameters: $files (list of paths), $day (DATE), $region (VARCHAR).
-- Rows whose timestamp rounds outside the day are dropped later (and counted) by the asset;
-- malformed lines land in the reject tables named here, which the asset turns into errors.
SELECT
    CAST($day AS DATE)                                                AS day,
    CAST($region AS VARCHAR)                                          AS region,
    CAST(regexp_extract(filename, '-([0-9]{2})-00-00\.csv$', 1) AS UTINYINT) AS hour,
    "timestamp",
    rtt,
    uplink,
    downlink
FROM read_csv(
    $files,
    header = true,
    auto_detect = false,
    columns = {'timestamp': 'BIGINT', 'rtt': 'DOUBLE', 'uplink': 'DOUBLE', 'downlink': 'DOUBLE'},
    filename = true,
    store_rejects = true,
    rejects_scan = 'lens_reject_scans',
    rejects_table = 'lens_rejects'
)
