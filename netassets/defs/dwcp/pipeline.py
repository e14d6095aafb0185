"""The DWCP pipeline's description: regions beside the day, its sample and demo."""

from netassets.core.pipeline import DemoStage, Pipeline
from netassets.dwcp import sample
from netassets.dwcp.schema import DIMENSION, NAME, scan_landing

PIPELINE = Pipeline(
    name=NAME,
    title="DWCP link telemetry CSVs -> DuckDB -> windows -> BandwidthLSTM -> report -> ONNX",
    dimension=DIMENSION,
    sample=sample,
    landing_scan=scan_landing,
    demo_sample_args=("--days", "2", "--regions", "us-east-1,eu-west-1", "--links", "2"),
    demo_stages=(
        DemoStage(("dwcp_raw",), "all"),
        DemoStage(("dwcp_windows", "dwcp_bandwidth_lstm", "dwcp_report", "dwcp_onnx", "dwcp_onnx_production"), "none",
                  {"ops": {"dwcp_bandwidth_lstm": {"config": {"epochs": 3}}}}),
    ),
)
