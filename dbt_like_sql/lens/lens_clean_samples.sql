-- lens_clean_samples: the observed samples of every kept 15 s group of one day x region,
-- as (group_id, slot, rtt), ready to be laid on the 1500-point grid (netassets/lens/grid.py).
-- Bound parameters: $day (DATE), $region (VARCHAR), $min_samples (groups need MORE observed points).
--
--  1. timestamps round to 10 ms ticks (half to even, as pandas' Series.dt.round does);
--  2. rtt <= 0 (a lost packet is -1) counts as missing;
--  3. duplicates of a tick keep the row with the first original timestamp, lost or not;
--  4. groups start at the first second ending in 12/27/42/57 (tick % 1500 = 1200: Starlink
--     reconfigures every 15 s) at or after the day's first sample; group = floor((t - start) / 15 s);
--  5. the last group is dropped (the end of the data cuts it off), and only groups with
--     more than $min_samples observed points of 1500 are kept.
WITH ticks AS (
    SELECT CAST(round_even("timestamp" / 1e7, 0) AS BIGINT) AS tick, "timestamp", CASE WHEN rtt > 0 THEN rtt END AS rtt
    FROM lens_raw_irtt
    WHERE day = $day AND region = $region
),
dedup AS (
    SELECT tick, arg_min_null(rtt, "timestamp") AS rtt FROM ticks GROUP BY tick
),
origin AS (
    SELECT min(tick) + ((1200 - min(tick) % 1500) + 1500) % 1500 AS start_tick FROM dedup
),
grouped AS (
    SELECT (d.tick - o.start_tick) // 1500 AS group_id, (d.tick - o.start_tick) % 1500 AS slot, d.rtt, o.start_tick
    FROM dedup d, origin o
    WHERE d.tick >= o.start_tick
),
kept AS (
    SELECT group_id
    FROM grouped
    GROUP BY group_id
    HAVING group_id < (SELECT max(group_id) FROM grouped) AND count(rtt) > $min_samples
)
SELECT g.group_id, CAST(g.slot AS SMALLINT) AS slot, g.rtt, g.start_tick
FROM grouped g SEMI JOIN kept k ON g.group_id = k.group_id
WHERE g.rtt IS NOT NULL
ORDER BY g.group_id, g.slot
