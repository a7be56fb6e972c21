#!/usr/bin/env bash
# Install what tests/helm needs beyond tests/cluster's binaries: a real Prometheus server
# (Debian's `prometheus` package, 2.42), which test_helm_install.py starts to scrape the
# operator and a trainer and to evaluate the alert rules and dashboard queries.
# Idempotent: a no-op when `prometheus` is already on PATH. Needs root (apt-get).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tests/helm/setup.sh: no apt-get here; install a Prometheus server (2.x or 3.x) on PATH" >&2
  exit 1
fi
echo "tests/helm/setup.sh: installing Debian's prometheus package (for tests/helm)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# --no-install-recommends: the server binary only (no node-exporter, no web assets).
apt-get install -y -qq --no-install-recommends prometheus >&2
# The package enables a system service; tests start their own server on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
command -v prometheus >/dev/null
