-- The seed's features for one (day, region), per router = hostname-ifname, in timeslot order.
-- The previous day's rows are read as context only (deltas and the rolling-4 z-scores look
-- back 3 rows), so a day's features do not depend on where partitions start.
-- Where the seed leaves NaN and then drops the row, netassets keeps the row:
--   first row of a router: deltas 0; a flat rolling window (std 0) or one point: z-score 0;
--   mean 0: ratio 1 (an idle interface).
WITH context AS (
    SELECT day, region, router, hostname, ifname, timeslot, max_metric_value, mean_metric_value
    FROM device_load_raw
    WHERE region = $region AND day BETWEEN $day - INTERVAL 1 DAY AND $day
),
rolled AS (
    SELECT
        *,
        lag(max_metric_value) OVER by_router AS prev_max,
        lag(mean_metric_value) OVER by_router AS prev_mean,
        avg(max_metric_value) OVER last4 AS roll_mean_max,
        stddev_pop(max_metric_value) OVER last4 AS roll_std_max,
        avg(mean_metric_value) OVER last4 AS roll_mean_mean,
        stddev_pop(mean_metric_value) OVER last4 AS roll_std_mean,
        count(*) OVER last4 AS roll_n
    FROM context
    WINDOW by_router AS (PARTITION BY router ORDER BY timeslot),
           last4 AS (PARTITION BY router ORDER BY timeslot ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
)
SELECT
    CAST($day AS DATE) AS day,
    region,
    router,
    hostname,
    ifname,
    timeslot,
    max_metric_value,
    mean_metric_value,
    abs(max_metric_value - mean_metric_value) AS diff,
    CASE WHEN mean_metric_value > 0 THEN max_metric_value / mean_metric_value ELSE 1.0 END AS ratio,
    coalesce(max_metric_value - prev_max, 0.0) AS delta_max,
    coalesce(mean_metric_value - prev_mean, 0.0) AS delta_mean,
    CASE WHEN roll_n >= 2 AND roll_std_max > 0 THEN (max_metric_value - roll_mean_max) / roll_std_max ELSE 0.0 END AS zscore_max,
    CASE WHEN roll_n >= 2 AND roll_std_mean > 0 THEN (mean_metric_value - roll_mean_mean) / roll_std_mean ELSE 0.0 END AS zscore_mean
FROM rolled
WHERE timeslot >= CAST($day AS DATE) AND timeslot < CAST($day AS DATE) + INTERVAL 1 DAY
ORDER BY router, timeslot
