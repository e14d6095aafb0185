"""Plumbing shared by every pipeline: settings, partitions, warehouse, SQL, checks, torchrun, plots."""
