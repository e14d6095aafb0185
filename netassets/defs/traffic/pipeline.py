"""The traffic pipeline's description: capture sites beside the day, its sample and demo."""

from netassets.core.pipeline import DemoStage, Pipeline
from netassets.traffic import sample
from netassets.traffic.readers import scan_landing

PIPELINE = Pipeline(
    name="traffic",
    title="packet-feature flows -> DuckDB flow index -> next-packet LSTM",
    dimension="site",
    sample=sample,
    landing_scan=scan_landing,
    demo_sample_args=("--days", "3", "--flows", "120", "--features", "24"),
    demo_stages=(
        DemoStage(("traffic_flows",), "all"),
        DemoStage(("traffic_lstm",), "none", run_config={"ops": {"traffic_lstm": {"config": {
            "epochs": 6, "seq_len": 40, "learning_rate": 0.05}}}}),
    ),
)
