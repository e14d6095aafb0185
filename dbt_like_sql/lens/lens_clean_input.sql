-- lens_clean_input: the received samples of one day x region of lens_raw_irtt, in file order.
-- Bound parameters: $day (DATE), $region (VARCHAR).
-- rtt <= 0 (a lost packet: -1, or 0 in some captures) is dropped here, before any rule, as
-- the seed drops it: a lost row never hides a received one in its tick, never starts the
-- grid and never makes a last group. The sequential rules that follow (10 ms rounding, first
-- row per tick, alignment to :12/:27/:42/:57, 15 s groups, the threshold, the grid fills) run
-- in netassets/lens/cleaning.py: on time-ordered rows they are one scatter into a grid in
-- numpy, where the same logic as SQL aggregates and windows measured ~8x slower.
SELECT "timestamp", rtt
FROM lens_raw_irtt
WHERE day = $day AND region = $region AND rtt > 0
