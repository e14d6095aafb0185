"""LENS: irtt latency hour files -> clean 15 s groups -> features, a global GMM, clusters, a PatchTST classifier."""
