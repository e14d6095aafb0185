"""The device_load pipeline's description: day x region partitions, sample data, demo stages."""

from netassets.core.pipeline import DemoStage, Pipeline
from netassets.device_load import sample
from netassets.device_load.landing import PIPELINE as NAME
from netassets.device_load.landing import scan_partitions

PIPELINE = Pipeline(
    name=NAME,
    title="device_data CSVs (router load) -> features -> Embed-LSTM forecasts -> anomalies",
    dimension="region",
    sample=sample,
    landing_scan=scan_partitions,
    demo_sample_args=("--days", "7", "--regions", "nl,be"),
    demo_stages=(
        DemoStage(("device_load_raw", "device_load_features"), "all"),
        DemoStage(("device_load_windows", "device_load_model"), "none",
                  {"ops": {"device_load_model": {"config": {"epochs": 3}}}}),
        DemoStage(("device_load_anomalies",), "latest"),
    ),
)
