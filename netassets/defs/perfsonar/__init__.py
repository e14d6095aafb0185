"""perfSONAR: packet-loss documents from a search cluster -> perfsonar_packet_loss -> perfsonar_anomaly_scores -> perfsonar_alarms."""
