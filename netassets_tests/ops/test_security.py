"""Security properties that hold across the code base, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from netassets.core.partitions import parse_partition_key
from netassets.core.settings import REPO_ROOT, safe_name
from netassets.core.warehouse import ident

SOURCES = sorted((REPO_ROOT / "netassets").rglob("*.py")) + sorted((REPO_ROOT / "bench").rglob("*.py"))


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


def dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def test_nothing_imports_a_pickle_loader():
    """Scalers, GMMs and reports are JSON/npz: no code path can unpickle a file a user placed."""
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] in {"pickle", "joblib", "cloudpickle", "dill", "skops"} for n in names):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_torch_load_is_weights_only():
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path in SOURCES
        for node in calls(path)
        if dotted(node.func) == "torch.load"
        and not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords)
    ]
    assert offenders == []


def test_numpy_loads_refuse_pickled_objects():
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path in SOURCES
        for node in calls(path)
        if dotted(node.func) in {"np.load", "numpy.load"}
        and any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                for k in node.keywords)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "value", ["../x", "a/b", "a\\b", "x'; DROP TABLE t; --", "", " ", "a b", "..", "a" * 65, "-leading", "é"]
)
def test_partition_values_that_could_escape_a_path_or_sql_are_rejected(value):
    with pytest.raises(ValueError):
        safe_name(value)
    with pytest.raises(ValueError):
        parse_partition_key(f"2024-01-01|{value}", "region")


@pytest.mark.parametrize("name", ["t; DROP TABLE x", "T", "a-b", "1abc", "a" * 64, "x y"])
def test_sql_identifiers_are_checked_before_formatting(name):
    with pytest.raises(ValueError):
        ident(name)
