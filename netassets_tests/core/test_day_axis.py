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
