-- The first LENS stamp not written as integer nanoseconds, with its file. Bound parameter: $files.
-- netassets/lens/raw.py runs it after DuckDB's reader (lens_raw_irtt.sql) read the files: its
-- BIGINT column takes 1.6988e+18 or 1698796800123456789.5 through a double and rounds it without
-- a word, so the stamps are looked at once more as text. Lines the reader refused or dropped are
-- its own to report (ignore_errors here).
SELECT filename, "timestamp"
FROM read_csv(
    $files,
    header = true,
    auto_detect = false,
    columns = {'timestamp': 'VARCHAR', 'rtt': 'VARCHAR', 'uplink': 'VARCHAR', 'downlink': 'VARCHAR'},
    filename = true,
    ignore_errors = true
)
WHERE NOT regexp_full_match(trim("timestamp"), '[-+]?[0-9]+')
LIMIT 1
