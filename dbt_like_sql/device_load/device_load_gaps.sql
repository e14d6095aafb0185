-- Time since the previous row of the same router, for the rows of one (day, region); the
-- previous day's rows count, so a gap across midnight is seen. First-ever rows have no gap.
WITH ordered AS (
    SELECT router, timeslot,
           date_diff('minute', lag(timeslot) OVER (PARTITION BY router ORDER BY timeslot), timeslot) AS gap_minutes
    FROM device_load_raw
    WHERE region = $region AND day BETWEEN $day - INTERVAL 1 DAY AND $day
)
SELECT router, timeslot, gap_minutes
FROM ordered
WHERE timeslot >= CAST($day AS DATE) AND gap_minutes IS NOT NULL
ORDER BY router, timeslot
