"""The shape of the code location: a pipeline is its two folders, discovered, never listed.

- every pipeline has a description object (``netassets/defs/<name>/pipeline.py``) that the
  command line, the demo and the tests iterate;
- Dagster objects (``netassets/defs/``) and compute (``netassets/<name>/``) import each other
  one way only: defs -> compute, never back; core imports no pipeline; pipelines never import
  each other; no two modules import each other;
- no dynamic-partition name is written as a string (the partition object carries it);
- every asset carries kinds, owners, a code version and a description; every config field a
  description; `dg check defs` accepts the project.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from netassets.pipelines import all_pipelines

PACKAGE = Path(__file__).resolve().parents[2] / "netassets"
REPO = PACKAGE.parent
NAMES = [p.name for p in all_pipelines()]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> netassets modules it imports (anywhere in the file, top level or in functions)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[_module_name(path)] = {m for m in found if m.startswith("netassets")}
    modules = set(graph)
    return {m: {i for i in deps if i in modules and i != m} for m, deps in graph.items()}


def test_five_pipelines_are_discovered_with_their_partitions():
    assert NAMES == sorted(["device_load", "dwcp", "lens", "perfsonar", "traffic"])
    for described in all_pipelines():
        assert described.dynamic.name == f"{described.name}_{described.dimension}s"
        assert described.partitions.partitions_defs[1].partitions_def is described.dynamic
        assert described.demo_stages, described.name
        assert (PACKAGE / described.name).is_dir() and (PACKAGE / "defs" / described.name).is_dir()


def test_imports_point_one_way():
    graph = _imports()
    problems = []
    for module, deps in graph.items():
        parts = module.split(".") + [""]
        for dep in deps:
            dep_parts = dep.split(".") + [""]
            if parts[1] == "core" and dep_parts[1] in NAMES + ["defs", "pipelines"]:
                problems.append(f"core imports a pipeline: {module} -> {dep}")
            if parts[1] in NAMES and dep_parts[1] == "defs":
                problems.append(f"compute imports Dagster objects: {module} -> {dep}")
            for a, b in ((parts, dep_parts),):
                mine = a[2] if a[1] == "defs" and len(a) > 2 else a[1]
                theirs = b[2] if b[1] == "defs" and len(b) > 2 else b[1]
                if mine in NAMES and theirs in NAMES and mine != theirs:
                    problems.append(f"pipelines import each other: {module} -> {dep}")
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})
    assert not problems and not mutual, (problems, mutual)


def test_no_dynamic_partition_name_is_spelled_out():
    names = [p.dynamic.name for p in all_pipelines()]
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(names))
    found = [f"{path.relative_to(REPO)}:{n}" for folder in ("netassets", "netassets_tests", "bench")
             for path in (REPO / folder).rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from netassets.definitions import defs

    return defs


def test_every_asset_has_catalog_metadata(defs):
    missing = []
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        for what, value in (("kinds", spec.kinds), ("owners", spec.owners), ("code_version", spec.code_version),
                            ("description", spec.description), ("group", spec.group_name in NAMES or None),
                            ("code references", spec.metadata.get("dagster/code_references"))):
            if not value:
                missing.append(f"{name}: {what}")
    assert not missing, missing


def test_every_config_field_is_described(defs):
    undescribed = []
    for asset in {id(a): a for a in defs.assets}.values():
        schema = asset.op.config_schema
        fields = getattr(getattr(schema, "config_type", None), "fields", None) or {}
        undescribed += [f"{asset.op.name}.{name}" for name, field in fields.items() if not field.description]
    assert not undescribed, undescribed


def test_every_model_and_report_asset_has_a_check(defs):
    graph = defs.resolve_asset_graph()
    checked = {key.asset_key for key in graph.asset_check_keys}
    unchecked = [spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()
                 if spec.key not in checked and ({"pytorch", "onnx", "sklearn", "report"} & set(spec.kinds)
                                                 or spec.key.to_user_string().endswith(("_report", "_model")))]
    assert not unchecked, unchecked


def test_dg_accepts_the_project():
    for command in (["check", "defs"], ["list", "defs"]):
        done = subprocess.run([sys.executable, "-c", "from dagster_dg_cli.cli import main; main()", *command],
                              cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    assert "lens_clean_groups" in done.stdout
