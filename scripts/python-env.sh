#!/usr/bin/env bash
# Make (or reuse) the project's Python environment and print its python.
#
# The venv lives outside the checkout (~/.cache/ftscale) so that CI's fresh clone and every
# developer checkout on this machine share one install of torch (a multi-GB CUDA build on PyPI).
# It is keyed by requirements.lock: when the lock changes, pip brings the venv up to date.
# The project itself is not installed into it; the Makefile puts operator/ and trainer_image/
# on PYTHONPATH, so the venv never points at one particular checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FTSCALE_CACHE:-$HOME/.cache/ftscale}"
venv="$cache/venv"
lock="$here/requirements.lock"
want="$(sha256sum "$lock" | cut -c1-16)"
mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  echo "python-env: creating $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
fi
if [ "$(cat "$venv/.ftscale-lock" 2>/dev/null)" != "$want" ]; then
  echo "python-env: installing requirements.lock into $venv (first time: several minutes)" >&2
  "$venv/bin/pip" install -q -r "$lock" >&2
  echo "$want" > "$venv/.ftscale-lock"
fi
echo "$venv/bin/python"
