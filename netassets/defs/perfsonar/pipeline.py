"""The perfSONAR pipeline's description: source hosts beside the day, its sample and demo (a seeded search server)."""

import datetime as dt
from contextlib import ExitStack

from netassets.core.pipeline import DemoData, DemoStage, Pipeline
from netassets.perfsonar import sample


def demo_prepare(stack: ExitStack) -> DemoData:
    """Start an osmem-server seeded with yesterday and the day before (closed with the demo)."""
    from netassets.perfsonar.sample import start_demo_server_and_seed

    cluster = start_demo_server_and_seed(dt.date.today() - dt.timedelta(days=1))
    stack.callback(cluster.server.close)
    return DemoData(partition_keys=cluster.partition_keys, run_configs=cluster.run_configs)


PIPELINE = Pipeline(
    name="perfsonar",
    title="perfSONAR packet loss from OpenSearch/Elasticsearch -> per-hour rank-scan anomaly scores -> alarms",
    dimension="source",
    sample=sample,
    landing_scan=None,
    demo_prepare=demo_prepare,
    demo_stages=(
        DemoStage(("perfsonar_packet_loss",), "all"),
        DemoStage(("perfsonar_anomaly_scores", "perfsonar_alarms"), "after_first"),
    ),
)
