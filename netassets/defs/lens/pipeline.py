"""The LENS pipeline as the rest of netassets sees it: partitions, sample generator, landing scan, demo."""

from netassets.core.pipeline import DemoStage, Pipeline
from netassets.lens import sample
from netassets.lens.raw import scan_lens_root

PIPELINE = Pipeline(
    name="lens",
    title="LENS irtt latency: clean 15 s groups, GMM regimes, a PatchTST regime classifier",
    dimension="region",
    sample=sample,
    landing_scan=scan_lens_root,
    demo_sample_args=("--days", "3", "--regions", "chicago,ottawa", "--hours", "1"),
    demo_stages=(
        DemoStage(("lens_raw_irtt", "lens_clean_groups", "lens_group_features"), "all"),
        DemoStage(
            ("lens_gmm", "lens_patchtst", "lens_patchtst_production"),
            "none",
            run_config={"ops": {"lens_patchtst": {"config": {
                "channels": "nearest", "epochs": 20, "batch_size": 32, "lr": 0.01, "d_model": 32,
                "num_attention_heads": 2, "num_hidden_layers": 1, "ffn_dim": 64, "patch_length": 10}}}},
        ),
        DemoStage(("lens_clusters",), "all"),
    ),
)
