-- The detector's input for one source-day: the day and the day before (the first hours'
-- 24 h reference windows reach back into it).
SELECT minute, destination, packet_loss
FROM perfsonar_packet_loss
WHERE source = $source AND day BETWEEN CAST($day AS DATE) - 1 AND CAST($day AS DATE)
ORDER BY minute, destination
