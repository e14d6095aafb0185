"""The warehouse's partition replace when an asset's newer version writes more columns."""

import datetime as dt

import polars as pl

DAY = dt.date(2024, 1, 1)


def test_a_new_column_is_added_and_older_partitions_read_null(warehouse):
    warehouse.replace_partition("scores", {"day": DAY, "region": "a"},
                                data=pl.DataFrame({"day": [DAY], "region": ["a"], "score": [1.0]}))
    written = warehouse.replace_partition(
        "scores", {"day": DAY, "region": "b"},
        select_sql="SELECT CAST($day AS DATE) AS day, 'b' AS region, 2.0 AS score, 0.5 AS likelihood",
        params={"day": DAY})
    assert written == 1
    rows = warehouse.query("SELECT region, score, likelihood FROM scores ORDER BY region").rows()
    assert rows == [("a", 1.0, None), ("b", 2.0, 0.5)]
