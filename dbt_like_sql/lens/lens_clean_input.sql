-- lens_clean_input: one day x region of lens_raw_irtt as 10 ms ticks, in the order it was read.
-- Bound parameters: $day (DATE), $region (VARCHAR).
-- Ticks round half to even, as pandas' Series.dt.round('10ms') does; rtt <= 0 (a lost packet
-- is -1) becomes NaN (missing). The sequential rules that follow (first stamp per tick,
-- alignment to :12/:27/:42/:57, 15 s groups, the threshold, the grid fills) run in
-- netassets/lens/cleaning.py: on time-ordered rows they are single O(n) passes in numpy,
-- where the same logic as SQL aggregates and windows measured ~8x slower.
SELECT
    CAST(round_even("timestamp" / 1e7, 0) AS BIGINT) AS tick,
    "timestamp",
    CASE WHEN rtt > 0 THEN rtt ELSE 'NaN'::DOUBLE END AS rtt
FROM lens_raw_irtt
WHERE day = $day AND region = $region
