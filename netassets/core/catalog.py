"""Catalog metadata every asset carries, added in one place when the code location loads.

- ``owners``: the pipeline's (``Pipeline.owners``), by the asset's group.
- ``code_version``: a digest of the asset function's source, so the UI marks what downstream
  of an edited asset is stale ("code version changed"); a change in a helper it calls does
  not count, which keeps a refactor from re-staling every table.
- code references: the file and line that define the asset ("View source" in the UI).

Table assets add ``dagster/row_count``, ``dagster/table_name`` and ``dagster/column_schema``
from the warehouse write itself (``core.warehouse.PartitionWrite.metadata``).
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from typing import Mapping, Sequence

import dagster as dg


def _code_version(asset: dg.AssetsDefinition) -> str:
    function = asset.op.compute_fn.decorated_fn
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]


def enrich(defs: dg.Definitions, owners_by_group: Mapping[str, Sequence[str]]) -> dg.Definitions:
    unique = list({id(a): a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)}.values())
    enriched = []
    # Code references are a beta API: every process that loads the code location (code server,
    # each run worker) would print three BetaWarnings into the `dagster dev` log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        referenced = dg.with_source_code_references(unique)
    for asset in referenced:
        version = _code_version(asset)
        enriched.append(asset.map_asset_specs(lambda spec, version=version: spec.replace_attributes(
            owners=list(owners_by_group.get(spec.group_name, ())) or spec.owners, code_version=version)))
    return dg.Definitions(
        assets=enriched,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=defs.sensors,
        schedules=defs.schedules,
        resources=defs.resources,
        executor=defs.executor,
    )
