"""DWCP bandwidth predictor (seed 003): DWCP CSVs -> windows -> BandwidthLSTM -> report -> ONNX."""
