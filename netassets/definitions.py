"""The one Definitions of the netassets code location.

Every pipeline's Dagster objects live in ``netassets/defs/<pipeline>/`` and are discovered
there (``dg.load_from_defs_folder``, configured by ``[tool.dg]`` in pyproject.toml); this file
adds what they share: the warehouse resource, the executor and the catalog metadata.
"""

from pathlib import Path

import dagster as dg

from netassets.core.catalog import enrich
from netassets.core.warehouse import DuckDBWarehouse
from netassets.pipelines import all_pipelines

# Each step of a run is a process. A forkserver that has imported the code location once
# forks them ready-made; a fresh interpreter per step re-imported it each time (measured:
# ~16 s a step under load vs ~1 s forked, bench/backfill.py, when the location still loaded
# torch). torch & co. are not preloaded: only the steps that train, fit or plot import them.
executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["netassets.definitions"]}}}
)

defs = enrich(
    dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources={"warehouse": DuckDBWarehouse()}, executor=executor),
    ),
    owners_by_group={p.name: p.owners for p in all_pipelines()},
)
