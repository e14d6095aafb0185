-- Feature rows for windowing: every region (training, $region = NULL) or one region, in a
-- day range ($first_day / $last_day may be NULL for open ends), in router and time order.
SELECT router, region, timeslot, day,
       max_metric_value, mean_metric_value, diff, ratio, delta_max, delta_mean, zscore_max, zscore_mean
FROM device_load_features
WHERE ($region IS NULL OR region = $region)
  AND ($first_day IS NULL OR day >= $first_day)
  AND ($last_day IS NULL OR day <= $last_day)
ORDER BY router, timeslot
