"""One documented first day: every generator's --start default and the day axis start there (#16)."""

import argparse
import importlib

import pytest

from netassets.core.partitions import daily
from netassets.core.settings import sample_start, start_date

GENERATORS = ["lens", "device_load", "dwcp", "traffic", "perfsonar"]


@pytest.mark.parametrize("pipeline", GENERATORS)
def test_every_generator_starts_on_the_first_day_of_the_axis_and_documents_its_defaults(pipeline):
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    importlib.import_module(f"netassets.{pipeline}.sample").add_arguments(parser)
    assert str(parser.get_default("start")) == sample_start() == start_date()
    assert all(action.help for action in parser._actions), "an option without help hides its default in --help"


def test_the_axis_starts_at_the_sample_start_and_the_env_moves_it(monkeypatch):
    assert daily.start.date().isoformat() == start_date()
    monkeypatch.setenv("NETASSETS_SAMPLE_START", "2024-02-01")
    assert start_date() == "2024-02-01"
    monkeypatch.setenv("NETASSETS_START_DATE", "2024-01-01")
    assert (start_date(), sample_start()) == ("2024-01-01", "2024-02-01")


@pytest.mark.parametrize("variable", ["NETASSETS_START_DATE", "NETASSETS_SAMPLE_START"])
@pytest.mark.parametrize("value", ["2023-13-01", "20231101", "2023-W44-3", "yesterday"])
def test_a_day_setting_not_written_yyyy_mm_dd_is_refused_naming_it(monkeypatch, variable, value):
    """Python 3.11's fromisoformat takes 20231101 and 2023-W44-3, which are no partition key."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} '{value}' is not a day written YYYY-MM-DD"):
        start_date()


def test_the_cli_names_a_bad_day_setting_instead_of_a_traceback(monkeypatch, capsys):
    from netassets.cli import main

    monkeypatch.setenv("NETASSETS_SAMPLE_START", "2023-13-01")
    assert main(["--help"]) == 2
    assert "NETASSETS_SAMPLE_START '2023-13-01' is not a day written YYYY-MM-DD" in capsys.readouterr().err


def test_the_home_is_absolute_and_never_empty(monkeypatch, tmp_path):
    from netassets.core.settings import netassets_home

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NETASSETS_HOME", "relative/home")
    assert netassets_home() == tmp_path / "relative" / "home"
    monkeypatch.setenv("NETASSETS_HOME", " ")
    with pytest.raises(ValueError, match="NETASSETS_HOME is set but empty"):
        netassets_home()


def test_the_daily_schedule_skips_a_yesterday_before_the_day_axis(instance):
    import datetime as dt

    import dagster as dg

    from netassets.defs.lens.automation import lens_daily_ingestion_schedule as schedule
    from netassets.pipelines import pipeline

    instance.add_dynamic_partitions(pipeline("lens").dynamic.name, ["chicago"])
    first = dt.datetime.combine(dt.date.fromisoformat(start_date()), dt.time(2), dt.timezone.utc)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=first)
    result = schedule.evaluate_tick(context)
    assert not result.run_requests and "before the first day of the day axis" in result.skip_message
