"""matplotlib figures as asset metadata: an inline PNG the UI renders, and a file on disk."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from netassets.core.metadata import FLOAT_FORMAT

if TYPE_CHECKING:  # torchrun workers draw figures too; they should not pay for importing dagster
    import dagster as dg
    from matplotlib.figure import Figure

# Headless: assets run in workers without a display. Set through the environment, which
# matplotlib reads when it is first imported, so that modules importing pyplot directly get
# Agg too, without this module importing matplotlib.
os.environ["MPLBACKEND"] = "Agg"


class _LazyPyplot:
    """``matplotlib.pyplot``, imported on first attribute access.

    Asset modules bind ``plt`` when the code location loads, but only the steps that draw need
    pyplot (~0.45 s to import): every code-server start and run worker would pay it otherwise.
    """

    def __getattr__(self, name: str):
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _LazyPyplot()


def figure_metadata(name: str, fig: "Figure", save_to: Path, dpi: int = 90) -> dict[str, "dg.MetadataValue"]:
    """Two metadata entries for one figure: ``name``, the PNG inline (the UI renders it), and
    ``<name>_path``, the same PNG written to ``save_to`` (the inline copy is base64 in the event
    log; the file is what a report, a notebook or a diff links to)."""
    import dagster as dg

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    png = buf.getvalue()
    save_to.parent.mkdir(parents=True, exist_ok=True)
    save_to.write_bytes(png)
    return {
        name: dg.MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})"),
        f"{name}_path": dg.MetadataValue.path(str(save_to)),
    }


def table_markdown(rows: list[dict], floatfmt: str = FLOAT_FORMAT) -> "dg.MetadataValue":
    """A list of same-keyed dicts as a markdown table (scores next to baselines, silhouettes per k...)."""
    import dagster as dg

    return dg.MetadataValue.md(markdown_table(rows, floatfmt))


def markdown_table(rows: list[dict], floatfmt: str = FLOAT_FORMAT) -> str:
    if not rows:
        return "_(empty)_"
    cols = list(rows[0])

    def cell(v):
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
