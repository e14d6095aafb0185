"""Dagster objects only, one sub-package per pipeline (``pipeline.py`` with its ``PIPELINE``
description, ``assets.py``, ``checks.py``, ``automation.py``). Nothing here imports torch or
another heavy library at the top: compute lives in ``netassets/<pipeline>/`` and is imported
inside the asset bodies that need it. ``dg.load_from_defs_folder`` discovers this tree."""
