"""Loading the code location imports none of the heavy libraries.

Every `dagster dev` start, code-server reload and run worker imports the code location;
torch, sklearn, matplotlib & co. add seconds to each, and only the steps that train, fit,
export or plot need them (they import them in their bodies). Asserted on sys.modules in a
fresh interpreter, not on time, so the test does not depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "sklearn", "matplotlib", "onnx", "onnxruntime", "transformers", "scipy"]
# Every module of the defs tree (Dagster objects only) imported one after another in one
# interpreter; after each, the heavy modules loaded so far, so a failure names the first module
# that pulled one in. Then the code location itself.
PROBE = """
import importlib, json, pkgutil, sys
import netassets.defs
heavy, loaded = json.loads(sys.argv[1]), {}
modules = [m.name for m in pkgutil.walk_packages(netassets.defs.__path__, "netassets.defs.")]
for module in modules + ["netassets.definitions"]:
    importlib.import_module(module)
    loaded[module] = sorted(name for name in heavy if name in sys.modules)
print(json.dumps(loaded))
"""


@pytest.fixture(scope="module")
def heavy_loaded() -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_code_location_imports_no_heavy_library(heavy_loaded):
    assert heavy_loaded["netassets.definitions"] == [], heavy_loaded


def test_every_pipeline_has_its_defs_modules(heavy_loaded):
    pipelines = {name.split(".")[2] for name in heavy_loaded if name.count(".") >= 3}
    assert {"lens", "device_load", "dwcp", "traffic", "perfsonar"} <= pipelines, sorted(heavy_loaded)
