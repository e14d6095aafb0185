-- perfsonar_packet_loss: one row per minute x destination of one source-day.
-- Input: temp table perfsonar_pulled (seq, timestamp_ms, destination, source_site,
-- destination_site, packet_loss), the day's parsed documents in pull order (time, then tiebreaker).
-- As the seed: timestamps are floored to the minute and the last document of a minute wins.
SELECT
    CAST($day AS DATE) AS day,
    CAST($source AS VARCHAR) AS source,
    date_trunc('minute', make_timestamp(timestamp_ms * 1000)) AS minute,
    destination,
    source_site,
    destination_site,
    packet_loss,
    make_timestamp(timestamp_ms * 1000) AS measured_at,
    count(*) OVER cell AS documents
FROM perfsonar_pulled
WINDOW cell AS (PARTITION BY destination, date_trunc('minute', make_timestamp(timestamp_ms * 1000)))
QUALIFY row_number() OVER (cell ORDER BY seq DESC) = 1
ORDER BY minute, destination
