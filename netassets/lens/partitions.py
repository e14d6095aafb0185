"""LENS partitions: calendar day x region; regions come from the folders under the LENS root."""

from netassets.core.partitions import day_by

REGION = "region"
lens_regions_name = "lens_regions"
lens_partitions = day_by(REGION, lens_regions_name)
