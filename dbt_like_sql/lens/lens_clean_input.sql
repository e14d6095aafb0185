-- lens_clean_input: one day x region of lens_raw_irtt, in the order it was read.
-- Bound parameters: $day (DATE), $region (VARCHAR).
-- rtt <= 0 (a lost packet is -1) is missing and becomes the token -1. The sequential rules
-- that follow (10 ms rounding, first stamp per tick, alignment to :12/:27/:42/:57, 15 s groups,
-- the threshold, the grid fills) run in netassets/lens/cleaning.py: on time-ordered rows they
-- are one scatter into a grid in numpy, where the same logic as SQL aggregates and windows
-- measured ~8x slower.
SELECT
    "timestamp",
    CASE WHEN rtt > 0 THEN rtt ELSE -1.0 END AS rtt_token
FROM lens_raw_irtt
WHERE day = $day AND region = $region
