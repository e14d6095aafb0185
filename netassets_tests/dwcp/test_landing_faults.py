"""DWCP landing files that must not be read: a link out of the landing folder, a copy in progress."""

from __future__ import annotations

import dagster as dg

from netassets.defs.dwcp.assets import dwcp_raw
from netassets.defs.dwcp.pipeline import PIPELINE

from .conftest import DAYS, REGION


def _failure(result) -> str:
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error, text = failure.step_failure_data.error, []
    while error is not None:
        text.append(error.message)
        error = error.cause
    return "\n".join(text)


def _materialize(warehouse, instance):
    instance.add_dynamic_partitions(PIPELINE.dynamic.name, [REGION])
    return dg.materialize([dwcp_raw], partition_key=f"{DAYS[0]}|{REGION}", instance=instance,
                          resources={"warehouse": warehouse}, raise_on_error=False)


def test_a_link_out_of_the_landing_folder_is_refused_unread(landing, tmp_path, warehouse, instance):
    path = landing / REGION / f"{DAYS[0]}.csv"
    outside = tmp_path / "elsewhere.csv"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    message = _failure(_materialize(warehouse, instance))
    assert str(path) in message and "leads outside the landing folder" in message


def test_a_file_changing_while_it_is_read_is_refused(landing, warehouse, instance, monkeypatch):
    import netassets.dwcp.runs as runs

    path = landing / REGION / f"{DAYS[0]}.csv"
    read = runs.read_raw_file

    def read_while_the_copy_goes_on(file, region, day):
        result = read(file, region, day)
        with file.open("a") as handle:  # the copy appends after the read
            handle.write(path.read_text().splitlines()[-1] + "\n")
        return result

    monkeypatch.setattr(runs, "read_raw_file", read_while_the_copy_goes_on)
    message = _failure(_materialize(warehouse, instance))
    assert "changed while it was read" in message
    assert not warehouse.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'dwcp_raw'").item()
