-- lens_rtt_token(rtt_nearest, rtt_observed): a lens_clean_groups row's token fill, the seed's
-- rtt_token: the received values, -1 where no packet was received. The table stores the nearest
-- fill and a bitmap of the received points (bit i - 1 for point i), not both fills.
--   SELECT group_id, lens_rtt_token(rtt_nearest, rtt_observed) AS rtt_token FROM lens_clean_groups
CREATE OR REPLACE MACRO lens_rtt_token(rtt_nearest, rtt_observed) AS
list_transform(rtt_nearest, (x, i) -> CASE WHEN get_bit(CAST(rtt_observed AS BIT), CAST(i - 1 AS INTEGER)) = 1
                                           THEN x ELSE -1.0 END)
