"""The one Definitions of the netassets code location: each pipeline's defs + shared resources."""

import dagster as dg

from netassets.core.warehouse import DuckDBWarehouse
from netassets.lens import definitions as lens
from netassets.dwcp import definitions as dwcp
from netassets.device_load import definitions as device_load
from netassets.traffic import definitions as traffic
from netassets.perfsonar import definitions as perfsonar

# Pipelines are imported as modules (not `defs as ...`): Dagster refuses a module that holds
# more than one Definitions object at top level.
defs = dg.Definitions.merge(
    dg.Definitions(resources={"warehouse": DuckDBWarehouse()}, executor=dg.multiprocess_executor),
    lens.defs,
    dwcp.defs,
    device_load.defs,
    traffic.defs,
    perfsonar.defs,
)
