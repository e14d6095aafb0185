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
        # One small network (bench.dwcp_real's sizes), not the default ensemble of 8 guide-size LSTMs:
        # on the generator's data it already beats every baseline, and the default takes this stage
        # from ~25 s to ~220 s on 2 cores. The ensemble is what wins on real traces (bench.dwcp_real).
        DemoStage(("dwcp_windows", "dwcp_bandwidth_lstm", "dwcp_report", "dwcp_onnx", "dwcp_onnx_production"), "none",
                  {"ops": {"dwcp_bandwidth_lstm": {"config": {
                      "epochs": 3, "ensemble_members": 1, "lstm_sizes": [64, 32, 16], "dense_sizes": [32, 16, 8]}}}}),
    ),
)
