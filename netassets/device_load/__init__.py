"""Device-load compute (seed 002): device_data CSVs -> features -> scaled windows -> Embed-LSTM -> anomalies.
The Dagster objects are in ``netassets/defs/device_load/``."""
