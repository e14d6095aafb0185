-- Flows the next-packet model trains on: the traffic_flows index of every materialised
-- partition, or of the sites in $sites (an empty list means all sites).
SELECT
    day,
    site,
    source_file,
    file_format,
    file_size,
    file_mtime_ns,
    line_no,
    byte_offset,
    byte_length,
    n_packets,
    n_features
FROM traffic_flows
WHERE len($sites) = 0 OR list_contains($sites, site)
ORDER BY day, site, source_file, line_no, byte_offset
