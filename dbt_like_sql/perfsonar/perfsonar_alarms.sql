-- perfsonar_alarms: the flagged hours of one source-day, with the destinations that drove them.
SELECT day, source, hour, score, accuracy, chance, top_destinations, baseline_max_z, baseline_flagged
FROM perfsonar_anomaly_scores
WHERE day = $day AND source = $source AND flagged
ORDER BY hour
