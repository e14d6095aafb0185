"""Every pipeline of the code location, found in ``netassets/defs/`` (one sub-package each).

Adding a pipeline is adding its two folders (``netassets/defs/<name>/`` with a ``pipeline.py``
that holds ``PIPELINE``, and ``netassets/<name>/`` with its compute); nothing here or in the
command line, the demo or ``definitions.py`` lists pipelines.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import netassets.defs
from netassets.core.pipeline import Pipeline


@cache
def all_pipelines() -> tuple[Pipeline, ...]:
    found = []
    for module in pkgutil.iter_modules(netassets.defs.__path__):
        if module.ispkg:
            found.append(importlib.import_module(f"netassets.defs.{module.name}.pipeline").PIPELINE)
    return tuple(sorted(found, key=lambda p: p.name))


def pipeline(name: str) -> Pipeline:
    by_name = {p.name: p for p in all_pipelines()}
    if name not in by_name:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {sorted(by_name)}")
    return by_name[name]
