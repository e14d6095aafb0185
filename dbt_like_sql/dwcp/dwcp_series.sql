-- The rows dwcp_windows turns into windows: chosen regions (all when the list is empty) and
-- days (open-ended when NULL), in link and time order.
SELECT region, node_id, peer_id, "timestamp", "day",
       throughput_mbps, rtt_ms, packet_loss, jitter_ms, time_of_day, day_of_week,
       congestion_window, queue_depth, retransmits
FROM dwcp_raw
WHERE (len(CAST($regions AS VARCHAR[])) = 0 OR list_contains(CAST($regions AS VARCHAR[]), region))
  AND (CAST($first_day AS DATE) IS NULL OR "day" >= CAST($first_day AS DATE))
  AND (CAST($last_day AS DATE) IS NULL OR "day" <= CAST($last_day AS DATE))
ORDER BY region, node_id, peer_id, "timestamp"
