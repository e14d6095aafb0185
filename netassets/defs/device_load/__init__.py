"""Device load: Dagster objects of the device_data CSV -> Embed-LSTM -> anomalies pipeline."""
