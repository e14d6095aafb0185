-- lens_clean_groups: the seed's cleaning of one day x region, one row per kept 15 s group.
-- Bound parameters: $day (DATE), $region (VARCHAR), $min_samples (groups need MORE observed points).
--
--  1. timestamps round to 10 ms ticks (half to even, as pandas' Series.dt.round does);
--  2. rtt <= 0 (a lost packet is -1) counts as missing;
--  3. duplicates of a tick keep the first row by original timestamp;
--  4. groups start at the first second ending in 12/27/42/57 (tick % 1500 = 1200: Starlink
--     reconfigures every 15 s) at or after the day's first sample; group = floor((t - start) / 15 s);
--  5. the last group is dropped (it is cut off by the end of the data), and groups keep only
--     with more than $min_samples observed points of 1500;
--  6. each group is laid on a 1500-point 10 ms grid: rtt_token fills gaps with -1, rtt_nearest
--     with the nearest observed point, a tie going to the previous one.
WITH ticks AS (
    SELECT
        CAST(round_even("timestamp" / 1e7, 0) AS BIGINT) AS tick,
        "timestamp",
        CASE WHEN rtt > 0 THEN rtt END AS rtt
    FROM lens_raw_irtt
    WHERE day = $day AND region = $region
),
dedup AS (
    SELECT tick, first(rtt ORDER BY "timestamp") AS rtt
    FROM ticks
    GROUP BY tick
),
origin AS (
    -- smallest tick >= the first one with tick % 1500 = 1200
    SELECT min(tick) + ((1200 - min(tick) % 1500) + 1500) % 1500 AS start_tick FROM dedup
),
grouped AS (
    SELECT
        (d.tick - o.start_tick) // 1500 AS group_id,
        (d.tick - o.start_tick) % 1500 AS slot,
        d.rtt,
        o.start_tick
    FROM dedup d, origin o
    WHERE d.tick >= o.start_tick
),
kept AS (
    SELECT group_id, any_value(start_tick) AS start_tick, count(rtt) AS n_observed
    FROM grouped
    GROUP BY group_id
    HAVING group_id < (SELECT max(group_id) FROM grouped) AND count(rtt) > $min_samples
),
grid AS (
    SELECT k.group_id, k.start_tick, k.n_observed, s.slot, g.rtt
    FROM kept k
    CROSS JOIN range(1500) AS s(slot)
    LEFT JOIN grouped g ON g.group_id = k.group_id AND g.slot = s.slot
),
neighbours AS (
    SELECT
        *,
        last_value(rtt IGNORE NULLS) OVER before AS prev_rtt,
        last_value(CASE WHEN rtt IS NOT NULL THEN slot END IGNORE NULLS) OVER before AS prev_slot,
        first_value(rtt IGNORE NULLS) OVER after AS next_rtt,
        first_value(CASE WHEN rtt IS NOT NULL THEN slot END IGNORE NULLS) OVER after AS next_slot
    FROM grid
    WINDOW
        before AS (PARTITION BY group_id ORDER BY slot ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
        after AS (PARTITION BY group_id ORDER BY slot ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
)
SELECT
    CAST($day AS DATE) AS day,
    CAST($region AS VARCHAR) AS region,
    group_id,
    make_timestamp(any_value(start_tick + group_id * 1500) * 10000) AS group_start,
    CAST(any_value(n_observed) AS SMALLINT) AS n_observed,
    CAST($min_samples AS SMALLINT) AS min_samples,
    list(coalesce(rtt, -1.0) ORDER BY slot) AS rtt_token,
    list(
        CASE
            WHEN rtt IS NOT NULL THEN rtt
            WHEN prev_rtt IS NULL THEN next_rtt
            WHEN next_rtt IS NULL THEN prev_rtt
            WHEN slot - prev_slot <= next_slot - slot THEN prev_rtt
            ELSE next_rtt
        END
        ORDER BY slot
    ) AS rtt_nearest
FROM neighbours
GROUP BY group_id
ORDER BY group_id
