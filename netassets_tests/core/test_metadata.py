"""core.metadata.shown: the floats a user reads in the UI, to four significant digits."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np

from netassets.core.metadata import shown


def test_floats_anywhere_in_metadata_are_rounded_and_the_rest_is_untouched() -> None:
    metadata = shown({
        "share": 0.123456789,
        "parity": dg.MetadataValue.float(2.384185791015625e-07),
        "throughput": np.float32(1 / 3),
        "scores": dg.MetadataValue.json({"model": {"rmse": 0.30051234567}, "sizes": [12345678, 2.0000001]}),
        "table": dg.MetadataValue.table(records=[dg.TableRecord({"name": "a", "value": 98765.4321})],
                                        schema=dg.TableSchema(columns=[dg.TableColumn("name", "string"),
                                                                       dg.TableColumn("value", "float")])),
        "rows": 1234567, "flag": True, "nan": math.nan, "path": dg.MetadataValue.path("/tmp/x.png"),
    })
    assert metadata["share"] == 0.1235
    assert metadata["parity"].value == 2.384e-07  # the order of magnitude stays
    assert metadata["throughput"] == 0.3333 and type(metadata["throughput"]) is float
    assert metadata["scores"].data == {"model": {"rmse": 0.3005}, "sizes": [12345678, 2.0]}
    assert metadata["table"].records[0].data == {"name": "a", "value": 98770.0}
    assert metadata["table"].schema.columns[1].name == "value"
    assert metadata["rows"] == 1234567 and metadata["flag"] is True and math.isnan(metadata["nan"])
    assert metadata["path"].path == "/tmp/x.png"
