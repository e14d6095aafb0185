"""Traffic next-packet pipeline (seed 001): packet-feature flows -> DuckDB index -> LSTM."""
