#!/usr/bin/env bash
# Install what tests/browser needs: a headless Chromium (Debian's `chromium` package), which
# the browser tests drive over the DevTools protocol to load report.html as a user's browser
# would (tests/browser/browser_support.py).
# Idempotent: a no-op when a Chromium is already there (`chromium` on PATH, or FTSCALE_CHROMIUM).
# Where apt cannot work (no apt-get, not root, no package mirror) it says so and exits 0: the
# browser tests then skip with the same message — except under CI (CI set), where they fail.
set -euo pipefail
if [ -n "${FTSCALE_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
cannot() {
  echo "tests/browser/setup.sh: $1; the browser tests will skip (install Chromium, or set" \
       "FTSCALE_CHROMIUM to a Chromium/Chrome binary, to run them)" >&2
  exit 0
}
command -v apt-get >/dev/null 2>&1 || cannot "no apt-get here"
[ "$(id -u)" = "0" ] || cannot "apt-get needs root"
echo "tests/browser/setup.sh: installing Debian's chromium package (for tests/browser)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || cannot "apt-get update failed"
# --no-install-recommends: the browser and the libraries it needs, no desktop extras.
apt-get install -y -qq --no-install-recommends chromium >&2 || cannot "apt-get install chromium failed"
command -v chromium >/dev/null
