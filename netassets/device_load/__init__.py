"""Device-load anomalies (seed 002): device_data CSVs -> features -> scaled windows -> Embed-LSTM -> DBSCAN."""
