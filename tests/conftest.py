"""Shared pytest set-up. Cluster fixtures live in tests/cluster/ (the control-plane harness)."""
pytest_plugins = ["cluster.fixtures"]  # tests/cluster/fixtures.py: control plane, namespaces
