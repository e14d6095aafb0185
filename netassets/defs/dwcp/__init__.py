"""DWCP bandwidth predictor (seed 003): DWCP CSVs -> DuckDB -> windows -> BandwidthLSTM -> report -> ONNX."""
