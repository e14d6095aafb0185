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

# All the steps of a run execute in its run worker, one after the other. Every step that writes
# the warehouse takes the single-slot "duckdb" pool, so a multiprocess executor ran them one at a
# time anyway, and paid for it per step: a forkserver importing the code location again, a process
# per step, and, per check step, a fresh import of Great Expectations (~4 s). In one process GX is
# imported once per run (bench/backfill.py has the figures). Trainers that need processes of their
# own (torchrun) start them themselves. A dead run worker is noticed by run monitoring (dagster.yaml).
executor = dg.in_process_executor

defs = enrich(
    dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources={"warehouse": DuckDBWarehouse()}, executor=executor),
    ),
    owners_by_group={p.name: p.owners for p in all_pipelines()},
)
