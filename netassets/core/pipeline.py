"""What the rest of netassets knows about one pipeline: a small description object.

Each pipeline declares one ``PIPELINE = Pipeline(...)`` in ``netassets/defs/<name>/pipeline.py``;
the command line (generators, ``register``), the demo, the catalog enrichment and the tests
iterate ``netassets.pipelines.all_pipelines()`` instead of naming pipelines, module paths or
dynamic-partition names. The dynamic dimension is the partition object itself: sensors add to
it with ``PIPELINE.dynamic.build_add_request(...)``, never through a name string.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Protocol, Sequence

import dagster as dg

from netassets.core.partitions import day_by
from netassets.core.settings import parse_day, safe_name

# {(day 'YYYY-MM-DD', value of the dynamic dimension): [files]} for what is landed now.
LandingScan = Callable[[], Mapping[tuple[str, str], Sequence[Path]]]


class SampleGenerator(Protocol):
    """A pipeline's ``sample`` module: ``netassets generate <pipeline>`` calls these two."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def generate(self, args: argparse.Namespace) -> Any: ...


@dataclass
class DemoData:
    """What a pipeline's demo preparation made: its partition keys, and op config per key."""

    partition_keys: list[str]
    run_configs: dict[str, dict] = field(default_factory=dict)  # key -> {"ops": {...}}


# Which prepared partitions a demo stage runs on.
StagePartitions = Literal["all", "none", "latest", "after_first"]


@dataclass(frozen=True)
class DemoStage:
    assets: tuple[str, ...]  # asset keys; their checks run with them
    partitions: StagePartitions = "all"
    run_config: Mapping[str, Any] = field(default_factory=dict)

    def keys(self, data: DemoData) -> list[str | None]:
        keys = sorted(data.partition_keys)
        return {"all": keys, "none": [None], "latest": keys[-1:], "after_first": keys[1:]}[self.partitions]


@dataclass(frozen=True)
class Pipeline:
    name: str
    title: str  # one line, shown by `netassets --help` and the demo
    dimension: str  # the dynamic dimension beside the day: "region", "site", "source"
    sample: SampleGenerator
    demo_stages: tuple[DemoStage, ...]
    # The landing scan, for pipelines whose raw data are files (perfSONAR reads a search index).
    landing_scan: LandingScan | None = None
    # Arguments of `netassets generate <name>` for the demo and `netassets up`.
    demo_sample_args: tuple[str, ...] = ()
    # Replaces "generate the sample, then scan the landing folder" (perfSONAR starts a server).
    demo_prepare: Callable[[ExitStack], DemoData] | None = None
    owners: tuple[str, ...] = ("team:network-ml",)

    def __post_init__(self) -> None:
        safe_name(self.name, "pipeline name")

    @cached_property
    def dynamic(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=f"{self.name}_{self.dimension}s")

    @cached_property
    def partitions(self) -> dg.MultiPartitionsDefinition:
        """Day x the dynamic dimension, declared once for every asset of the pipeline."""
        return day_by(self.dimension, self.dynamic)

    def landed_keys(self) -> list[str]:
        """``<day>|<value>`` of every partition with landed files (validated names only)."""
        if self.landing_scan is None:
            return []
        keys = set()
        for day, other in self.landing_scan():
            parse_day(day, "landing day folder")
            keys.add(f"{day}|{safe_name(other, self.dimension)}")
        return sorted(keys)

    def register(self, instance: dg.DagsterInstance, values: Iterable[str] | None = None) -> list[str]:
        """Add the landed (or given) values of the dynamic dimension to the instance."""
        found = sorted({safe_name(v, self.dimension) for v in values} if values is not None
                       else {key.split("|")[1] for key in self.landed_keys()})
        if found:
            instance.add_dynamic_partitions(self.dynamic.name, found)
        return found

    def generate_sample(self, *argv: str) -> Any:
        """Run the generator exactly as ``netassets generate <name> argv...`` would."""
        parser = argparse.ArgumentParser(prog=f"netassets generate {self.name}")
        self.sample.add_arguments(parser)
        return self.sample.generate(parser.parse_args(list(argv)))

    def prepare_demo(self, instance: dg.DagsterInstance, stack: ExitStack) -> DemoData:
        if self.demo_prepare is not None:
            data = self.demo_prepare(stack)
            self.register(instance, {key.split("|")[1] for key in data.partition_keys})
            return data
        if not self.landed_keys():  # a home the demo ran in before keeps its sample: never overwritten
            self.generate_sample(*self.demo_sample_args)
        self.register(instance)
        return DemoData(self.landed_keys())
