#!/usr/bin/env bash
# Install what tests/browser needs: a headless Chromium (Debian's `chromium` package), which
# the browser tests drive with --headless --dump-dom / --screenshot to load report.html (and
# the operator's study pages) as a user's browser would.
# Idempotent: a no-op when `chromium` is already on PATH. Needs root (apt-get).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tests/browser/setup.sh: no apt-get here; install Chromium (a \`chromium\` on PATH)" >&2
  exit 1
fi
echo "tests/browser/setup.sh: installing Debian's chromium package (for tests/browser)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# --no-install-recommends: the browser and its libraries only (no desktop integration,
# no extra fonts beyond what the package depends on).
apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium >/dev/null
