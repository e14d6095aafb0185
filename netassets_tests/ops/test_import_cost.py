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


# A check's process: GX imported through netassets, a suite of every kind of expectation that
# netassets declares validated; then scipy.stats and altair used as any other code would use them.
CHECKING = """
import json, sys
from netassets.core.expectations import every_kind_suite, validate_frame
frame, suite = every_kind_suite()
result = validate_frame(frame, suite, "probe")
loaded_by_gx = {"scipy.stats": "scipy.stats._stats_py" in sys.modules, "altair": "narwhals" in sys.modules}
import scipy.stats
import altair as alt
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as gx_kl
print(json.dumps({"success": bool(result.success), "evaluated": len(result.results), "loaded_by_gx": loaded_by_gx,
                  "norm_cdf_0": float(scipy.stats.norm.cdf(0)), "chart": alt.Chart({"values": []}).mark_bar().mark,
                  "gx_sees_the_real_altair": gx_kl.alt.Chart is sys.modules["altair"].Chart,
                  "replaced": [type(sys.modules[name]).__name__ for name in ("scipy.stats", "altair")]}))
"""


def test_checks_import_great_expectations_without_scipy_stats_or_altair():
    """GX imports scipy.stats and altair for expectations netassets never runs: deferred, every
    kind of expectation netassets declares still validates, and both still work when used."""
    done = subprocess.run([sys.executable, "-c", CHECKING], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome == {"success": True, "evaluated": 11, "loaded_by_gx": {"scipy.stats": False, "altair": False},
                       "norm_cdf_0": 0.5, "chart": "bar", "gx_sees_the_real_altair": True,
                       "replaced": ["module", "module"]}


def test_a_deferred_module_read_first_by_two_threads_at_once_is_imported_once():
    probe = """
import sys, threading
from netassets.core.expectations import _defer
_defer("altair")
stand_in, got, start = sys.modules["altair"], [], threading.Barrier(4)
def first_use():
    start.wait()
    got.append(stand_in.Chart)
threads = [threading.Thread(target=first_use) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(len(got) == 4 and len({id(c) for c in got}) == 1 and sys.modules["altair"].Chart is got[0]
      and type(sys.modules["altair"]).__name__ == "module")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split()[-1] == "True", done.stderr[-3000:]


# After GX's import the stand-ins are gone from sys.modules: what user code does with scipy.stats
# then (a submodule first, mock.patch, a reload) meets the real module, while GX's own
# module-level name still answers through its stand-in.
AFTER_GX = """
import importlib, json, sys
from unittest import mock
from netassets.core.expectations import import_great_expectations
import_great_expectations()
withdrawn = "scipy.stats" not in sys.modules and "altair" not in sys.modules and "scipy.stats._stats_py" not in sys.modules
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as gx_kl
from scipy.stats.contingency import association  # a submodule first
import scipy.stats
same_function = scipy.stats.chi2_contingency is scipy.stats.contingency.chi2_contingency
with mock.patch("scipy.stats.norm") as fake:
    patched = scipy.stats.norm is fake and gx_kl.stats.norm is fake
reloaded = importlib.reload(scipy.stats) is sys.modules["scipy.stats"]
print(json.dumps({"withdrawn": withdrawn, "same_function": same_function, "patched": patched, "reloaded": reloaded,
                  "gx_sees_the_real_module": gx_kl.stats.norm is scipy.stats.norm and "norm" in dir(gx_kl.stats),
                  "types": [type(sys.modules[name]).__name__ for name in ("scipy.stats", "scipy.stats.contingency")]}))
"""


def test_after_gx_is_imported_scipy_stats_is_imported_patched_and_reloaded_as_ever():
    done = subprocess.run([sys.executable, "-c", AFTER_GX], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "withdrawn": True, "same_function": True, "patched": True, "reloaded": True, "gx_sees_the_real_module": True,
        "types": ["module", "module"]}


def test_scipy_stats_imported_before_gx_is_left_as_it_is():
    probe = ("import sys, scipy.stats; before = sys.modules['scipy.stats']; "
             "from netassets.core.expectations import import_great_expectations; import_great_expectations(); "
             "print(sys.modules['scipy.stats'] is before and type(before).__name__ == 'module')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split()[-1] == "True", done.stderr[-3000:]


def test_the_warm_up_suite_has_every_kind_of_expectation_netassets_declares():
    """The warm process validates every_kind_suite once so that no run pays GX's first use of a kind:
    it must hold every kind the pipelines declare (gxe.<Kind> anywhere in the package)."""
    import re
    from pathlib import Path

    import netassets
    from netassets.core.expectations import every_kind_suite

    import netassets.core.expectations

    # the pipelines' own declarations: not the module that holds the warm-up suite itself
    sources = [path for path in Path(netassets.__file__).parent.rglob("*.py")
               if path != Path(netassets.core.expectations.__file__)]
    declared = {kind for path in sources for kind in re.findall(r"gxe\.(Expect\w+)", path.read_text())}
    _, suite = every_kind_suite()
    assert declared and declared == {type(expectation).__name__ for expectation in suite}
