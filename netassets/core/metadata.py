"""Numbers in metadata as the UI shows them: every float to four significant digits.

A mean or a score from numpy carries 16-17 digits (0.30051234567891), which the UI prints in
full. Four significant digits keep the comparisons the verdicts make readable (0.3005 against
0.301) without hiding an order of magnitude (an ONNX parity of 2.384e-07 stays 2.384e-07).
Markdown tables use the same rule (``core.plots.markdown_table``).

Asset steps apply it to what they report, the torchrun workers' figures included; dagster is
imported only for Dagster's own metadata values.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

SIGNIFICANT_DIGITS = 4
FLOAT_FORMAT = f".{SIGNIFICANT_DIGITS}g"


def shown_float(value: float) -> float:
    return float(format(value, FLOAT_FORMAT)) if math.isfinite(value) else float(value)


def shown(value: Any) -> Any:
    """``value`` with every float in it rounded: plain floats, dicts, lists, and Dagster's
    float, JSON and table metadata values. Everything else is returned as it is."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):  # numpy's float64 included
        return shown_float(value)
    if getattr(value, "dtype", None) is not None and value.dtype.kind == "f" and getattr(value, "ndim", 1) == 0:
        return shown_float(float(value))  # numpy's float32 and float16 scalars
    if isinstance(value, Mapping):
        return {key: shown(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return [shown(item) for item in value]
    if type(value).__module__.startswith("dagster"):
        return _shown_metadata_value(value)
    return value


def _shown_metadata_value(value: Any) -> Any:
    import dagster as dg

    if isinstance(value, dg.FloatMetadataValue):
        return dg.MetadataValue.float(shown_float(value.value)) if value.value is not None else value
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(shown(value.data))
    if isinstance(value, dg.TableMetadataValue):
        return dg.MetadataValue.table(records=[dg.TableRecord(shown(dict(record.data))) for record in value.records],
                                      schema=value.schema)
    return value
