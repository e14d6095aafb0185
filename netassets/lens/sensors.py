"""The LENS landing sensor: a new region folder or day folder under the LENS root becomes runs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import dagster as dg

from netassets.core.automation import daily_ingestion_schedule, landing_sensor
from netassets.core.settings import landing_dir
from netassets.lens.assets import lens_ingest
from netassets.lens.model_assets import lens_group_features
from netassets.lens.partitions import lens_regions_name
from netassets.lens.raw import HOUR_FILE

# Everything per partition that needs no trained model; lens_clusters waits for a lens_gmm.
lens_ingest_job = dg.define_asset_job(
    "lens_ingest_job", selection=dg.AssetSelection.assets(lens_ingest, lens_group_features)
)


def scan_lens_root(root: Path | None = None) -> dict[tuple[str, str], list[Path]]:
    """{(day, region): hour files} for ``{root}/{region}/{day}/irtt-10ms-1h-{day}-{HH}-00-00.csv``."""
    root = root or landing_dir("lens")
    found: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in root.glob("*/*/irtt-10ms-1h-*.csv"):
        match = HOUR_FILE.match(path.name)
        if match and match.group(1) == path.parent.name:
            found[(path.parent.name, path.parent.parent.name)].append(path)
    return found


lens_landing_sensor = landing_sensor(
    name="lens_landing_sensor",
    target=lens_ingest_job,
    dynamic_partitions_name=lens_regions_name,
    scan=scan_lens_root,
    root=lambda: landing_dir("lens"),
    description="Watches the LENS root; registers new regions and runs each day x region whose hour files changed "
                "and have been quiet for the settle interval.",
)

lens_daily_schedule = daily_ingestion_schedule(
    name="lens_daily_ingestion",
    target=lens_ingest_job,
    dynamic_partitions_name=lens_regions_name,
    description="Yesterday x every known region, for hour files that landed without the sensor running.",
)
