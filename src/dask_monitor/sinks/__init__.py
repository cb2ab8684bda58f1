"""Sinks: where events and snapshots go besides the panel (event logs, metrics)."""
