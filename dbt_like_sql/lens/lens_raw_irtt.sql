-- lens_raw_irtt (the rows): one day x region of LENS irtt hour files, as read, by DuckDB.
-- Bound parameter: $files (list of paths).
-- netassets/lens/ingest.py reads the hour files with polars first; this reader runs only when
-- that read fails or finds an empty field, because DuckDB's rejects tables name the file, the
-- line and the column of every bad line (ingest.py turns them into errors, or drops and counts a
-- truncated last line).
SELECT "timestamp", rtt, uplink, downlink, filename
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
