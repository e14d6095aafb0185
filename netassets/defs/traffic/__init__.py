"""Traffic pipeline (seed 001): flow files -> traffic_flows (DuckDB index) -> traffic_lstm (next-packet LSTM)."""
