"""Great Expectations 1.x suites as partition-scoped Dagster asset checks.

`dagster-ge` pins great-expectations < 1.0, so the suite runs here in an ephemeral GX
context on a pandas frame of the check's partition only. Each expectation's outcome and
GX's statistics land in the check's metadata, which the UI shows on the asset's Checks tab.
"""


import importlib
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from itertools import count
from typing import Any

import dagster as dg
import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

_batch_ids = count()
# Modules GX imports when it is imported but that no netassets expectation runs: scipy.stats (for
# the KL-divergence and KS-test expectations; 0.5-1 s of a 2.5-3.5 s import on a slower machine)
# and altair with narwhals (charts only the KL-divergence expectation draws; ~0.1 s of ~1.1 s on
# a faster one). Every process that checks pays the import. Deferred, not dropped: code that does
# use one gets the real module.
DEFERRED_BY_GX = ("scipy.stats", "altair")


class _Deferred(types.ModuleType):
    """Stands in for a module while GX is imported, and stays behind in the GX modules that bound
    it at their top (``from scipy import stats``): when one of its attributes is first read, the
    real module is imported (a plain import: the stand-in has left ``sys.modules`` by then) and
    answers from then on.

    Not importlib's LazyLoader: on Python 3.11 a plain ``import altair`` reads the module's
    ``__spec__``, which makes a LazyLoader module load itself at once. The stand-in holds the
    real ``__spec__`` (not initialising), so ``import`` hands it over untouched. Read while GX's
    import still runs, it steps aside first. Two threads reading it first at once both ask for
    the import; Python's import lock gives both the one module."""

    def __getattr__(self, attribute: str) -> Any:  # only for what the stand-in itself lacks
        return getattr(self._real_module(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self._real_module())

    def _real_module(self) -> types.ModuleType:
        real = self.__dict__.get("_real")
        if real is None:
            _withdraw(self)
            real = self.__dict__["_real"] = importlib.import_module(self.__name__)
        return real


_withdraw_lock = threading.Lock()


def _defer(name: str) -> _Deferred | None:
    """Put a ``_Deferred`` stand-in for ``name`` in sys.modules (and on its parent package), unless
    it is imported already or not installed; the stand-in, or None."""
    if name in sys.modules or (spec := importlib.util.find_spec(name)) is None:
        return None
    stand_in = _Deferred(name)
    stand_in.__spec__ = spec
    stand_in.__file__ = spec.origin
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, stand_in)
    return stand_in


def _withdraw(stand_in: _Deferred) -> None:
    """Take ``stand_in`` out of sys.modules and off its parent package, where it still is, so that
    every later ``import`` (a submodule first, a reload, ``mock.patch``) meets the real module;
    scipy's own lazy ``__getattr__`` gives ``scipy.stats`` to ``import scipy`` users. Under a lock,
    never held during an import: a check and removal racing another thread's could otherwise
    remove the real module that thread has just imported."""
    name = stand_in.__name__
    parent, _, child = name.rpartition(".")
    with _withdraw_lock:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        package = sys.modules.get(parent) if parent else None
        if package is not None and package.__dict__.get(child) is stand_in:
            delattr(package, child)


def import_great_expectations():
    """``great_expectations``, imported with the modules in DEFERRED_BY_GX deferred: stood in for
    during GX's import only."""
    if "great_expectations" not in sys.modules:
        stand_ins = [stand_in for name in DEFERRED_BY_GX if (stand_in := _defer(name)) is not None]
        try:
            import great_expectations
        finally:
            for stand_in in stand_ins:
                _withdraw(stand_in)
    import great_expectations

    return great_expectations


class _LazyExpectations:
    """``gxe.ExpectColumnValuesToBeBetween(...)``: great_expectations is imported on first use.

    Importing GX takes seconds, and every step process of a run imports the whole code
    location; only the processes that actually run a check should pay for it.
    """

    def __getattr__(self, name: str):
        if name.startswith("_"):  # dunder probes (inspect.getmembers in Dagster's defs discovery) must not import GX
            raise AttributeError(name)
        return getattr(import_great_expectations().expectations, name)


gxe = _LazyExpectations()


_datasource_lock = threading.Lock()


def _datasource():
    """The pandas datasource of the process's ephemeral GX context, made once (under a lock: a
    step's GX worker may still be making it when the next step's worker asks for it)."""
    with _datasource_lock:
        return _make_datasource()


@lru_cache(maxsize=1)
def _make_datasource():
    gx = import_great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("netassets")


def validate_frame(frame: pd.DataFrame, expectations: Sequence[Any], suite_name: str):
    """Run expectations on a frame; returns GX's ExpectationSuiteValidationResult."""
    gx = import_great_expectations()

    asset = _datasource().add_dataframe_asset(f"{suite_name}_{next(_batch_ids)}")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=suite_name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    return batch.validate(suite)


def every_kind_suite() -> tuple[pd.DataFrame, list]:
    """A small frame and one expectation of every kind netassets declares, all of which it meets."""
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0, 1, 2], "c": ["x", "y", "x"]})
    return frame, [
        gxe.ExpectTableRowCountToBeBetween(min_value=1), gxe.ExpectTableRowCountToEqual(value=3),
        gxe.ExpectTableColumnsToMatchSet(column_set=["a", "b", "c"]),
        gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=3),
        gxe.ExpectColumnMeanToBeBetween(column="a", min_value=1, max_value=3),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="a", column_B="b"),
        gxe.ExpectColumnUniqueValueCountToBeBetween(column="c", min_value=2, max_value=2),
        gxe.ExpectColumnValuesToBeInSet(column="c", value_set=["x", "y"]),
        gxe.ExpectColumnValuesToBeUnique(column="a"), gxe.ExpectColumnValuesToNotBeNull(column="c"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["a", "c"]),
    ]


def warm_up() -> None:
    """Validate ``every_kind_suite`` once. A process's first validation fills pydantic's and GX's
    caches (LENS's two suites: 0.24 s the first time, 0.11 s after), so a warm process that forks
    run workers (netassets.core.run_launcher) pays that once instead of in every run. tqdm's monitor
    thread is switched off first: a validation would start it, and a process that forks must hold
    no thread (netassets' GX context shows no progress bars, so the monitor has nothing to watch)."""
    import tqdm

    tqdm.tqdm.monitor_interval = 0
    frame, expectations = every_kind_suite()
    validation = validate_frame(frame, expectations, suite_name="warm_up")
    if not validation.success:
        raise RuntimeError(f"GX warm-up suite failed: {[r.expectation_config.type for r in validation.results if not r.success]}")


def _describe(expectation_result) -> dict[str, Any]:
    config = expectation_result.expectation_config
    result = expectation_result.result or {}
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    row = {
        "expectation": config.type,
        "column": kwargs.get("column", ""),
        "success": bool(expectation_result.success),
        "observed": result.get("observed_value", ""),
        "unexpected_count": result.get("unexpected_count", ""),
        "unexpected_percent": result.get("unexpected_percent", ""),
        "sample_unexpected": result.get("partial_unexpected_list", [])[:5],
    }
    return row


def check_result_from_validation(validation, extra_metadata: dict[str, Any] | None = None,
                                 severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                                 spec: dg.AssetCheckSpec | None = None) -> dg.AssetCheckResult:
    rows = [_describe(r) for r in validation.results]
    failed = [f"{r['expectation']}({r['column']})" if r["column"] else r["expectation"] for r in rows if not r["success"]]
    stats = validation.statistics
    table = ["| expectation | column | ok | observed | unexpected | unexpected % | sample |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = r["unexpected_percent"]
        table.append(
            f"| {r['expectation']} | {r['column']} | {'yes' if r['success'] else 'NO'} | {r['observed']} | "
            f"{r['unexpected_count']} | {'' if pct in ('', None) else format(pct, '.3g')} | {r['sample_unexpected']} |"
        )
    metadata = {
        "evaluated_expectations": int(stats["evaluated_expectations"]),
        "successful_expectations": int(stats["successful_expectations"]),
        "success_percent": float(stats["success_percent"] or 0.0),
        "failed_expectations": ", ".join(failed) or "none",
        "gx_results": dg.MetadataValue.md("\n".join(table)),
        **(extra_metadata or {}),
    }
    return dg.AssetCheckResult(passed=bool(validation.success), severity=severity, metadata=metadata,
                               asset_key=spec.asset_key if spec else None, check_name=spec.name if spec else None)


def gx_check_spec(*, asset: Any, name: str, description: str, partitions_def: dg.PartitionsDefinition,
                  blocking: bool = True) -> dg.AssetCheckSpec:
    """A GX suite declared on the asset that it checks (``check_specs=``) and evaluated in the
    asset's own step by ``gx_step_check``: no check step of its own, so no process that imports
    GX again and no re-read of what the step has just written. Partitioned like the asset, so each
    evaluation is recorded against the partition it checked."""
    return dg.AssetCheckSpec(name=name, asset=asset, description=description, blocking=blocking,
                             partitions_def=partitions_def)


def gx_step_check(spec: dg.AssetCheckSpec, frame: pd.DataFrame, expectations: Sequence[Any], partition_key: str,
                  severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    """``spec``'s result from GX on ``frame``: the step's aggregates of the partition it wrote."""
    validation = validate_frame(frame, expectations, suite_name=spec.name)
    return check_result_from_validation(validation, {"partition": partition_key, "rows_validated": len(frame)},
                                        severity=severity, spec=spec)


class StepChecks:
    """The GX suites of one step, evaluated on a worker thread of their own while the step goes on.

    The worker starts at once: in a process that has not imported GX yet it imports it first
    (3.5-5x the time DuckDB takes to scan a LENS day's CSVs), while the step reads and cleans
    on native threads that leave the GIL free. Each suite is handed over as soon as the step has
    built what it validates, and runs while the step writes. ``results()`` gives the checks'
    results in the order they were submitted; a suite that raised raises there.

        with StepChecks() as checks:
            rows = read(...)
            checks.submit(lambda: gx_step_check(SPEC, frame_of(rows), expectations(), key))
            write(rows)
            yield from checks.results()
    """

    def __init__(self):
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx-checks")
        self._worker.submit(_datasource)  # its failure, if any, is raised again by each suite
        self._submitted: list[Future] = []

    def submit(self, check: Callable[[], dg.AssetCheckResult]) -> None:
        """Run ``check`` on the worker: the frame it builds and the expectations it declares
        (which import GX) are made there too, so nothing on the step's thread waits for GX."""
        self._submitted.append(self._worker.submit(check))

    def results(self) -> Iterator[dg.AssetCheckResult]:
        for future in self._submitted:
            yield future.result()

    def __enter__(self) -> "StepChecks":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        # After a failure nothing reads the results: suites not yet started are dropped, and the
        # step's error is not held up by an import still running (the thread ends on its own).
        self._worker.shutdown(wait=error_type is None, cancel_futures=error_type is not None)


def gx_partition_check(
    *,
    asset: Any,
    name: str,
    description: str,
    partitions_def: dg.PartitionsDefinition,
    load: Callable[..., pd.DataFrame],
    expectations: Callable[[pd.DataFrame], Sequence[Any]],
    blocking: bool = True,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    additional_deps: Sequence[Any] | None = None,
) -> dg.AssetChecksDefinition:
    """An asset check that loads only the run's partition and validates it with GX.

    ``load(warehouse, partition_key)`` returns the frame to validate (an empty frame fails the
    non-empty expectation, it is not skipped); ``expectations(frame)`` builds the expectations.
    """
    from netassets.core.warehouse import DuckDBWarehouse

    @dg.asset_check(
        asset=asset,
        name=name,
        description=description,
        blocking=blocking,
        partitions_def=partitions_def,
        additional_deps=additional_deps,
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
        partition_key = context.op_execution_context.partition_key
        with StepChecks() as checks:  # GX is imported while the partition loads
            frame = load(warehouse, partition_key)
            checks.submit(lambda: check_result_from_validation(
                validate_frame(frame, expectations(frame), suite_name=name),
                {"partition": partition_key, "rows_validated": len(frame)}, severity=severity))
            (result,) = checks.results()
        return result

    return _check
