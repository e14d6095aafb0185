"""Device-load partitions: calendar day x region; regions come from the hostnames in the landing files."""

from netassets.core.partitions import day_by

REGION = "region"
device_load_regions_name = "device_load_regions"
device_load_partitions = day_by(REGION, device_load_regions_name)
