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
# Each step of a run is a process. A forkserver that has imported the code location once
# forks them ready-made; a fresh interpreter per step re-imported it each time (measured:
# ~16 s a step under load vs ~1 s forked, bench/backfill.py, when the location still loaded
# torch). torch & co. are not preloaded: only the steps that train, fit or plot import them.
executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["netassets.definitions"]}}}
)

defs = dg.Definitions.merge(
    dg.Definitions(resources={"warehouse": DuckDBWarehouse()}, executor=executor),
    lens.defs,
    dwcp.defs,
    device_load.defs,
    traffic.defs,
    perfsonar.defs,
)
