"""perfSONAR partitions: calendar day x source host; sources are discovered in the index by the sensor."""

from netassets.core.partitions import day_by

SOURCE = "source"
perfsonar_sources_name = "perfsonar_sources"
perfsonar_partitions = day_by(SOURCE, perfsonar_sources_name)
