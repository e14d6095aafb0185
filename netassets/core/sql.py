"""SQL models under dbt_like_sql/<pipeline>/<name>.sql, run with bound parameters.

Parameters are written ``$name`` in the files and bound by DuckDB, never formatted in.
"""

from __future__ import annotations

from functools import lru_cache
from netassets.core.settings import SQL_DIR, safe_name


@lru_cache(maxsize=None)
def load_sql(pipeline: str, name: str) -> str:
    path = SQL_DIR / safe_name(pipeline, "pipeline") / f"{safe_name(name, 'sql model')}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL model {path} not found (set NETASSETS_SQL_DIR if the package was installed elsewhere)")
    return path.read_text()
