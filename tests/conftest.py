"""Shared pytest set-up. Cluster fixtures live in tests/cluster/ (the control-plane harness)."""
