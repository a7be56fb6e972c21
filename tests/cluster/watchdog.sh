#!/usr/bin/env bash
# Run by up.sh when FTSCALE_CLUSTER_OWNER_PID is set: waits for that process to end, then
# stops the cluster, so a test run that is killed (even with SIGKILL) leaves no process behind.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
owner="${1:?usage: watchdog.sh OWNER_PID}"
while kill -0 "$owner" 2>/dev/null && [ -d "${FTSCALE_CLUSTER_DIR:?}/pids" ]; do sleep 1; done
if [ -d "$FTSCALE_CLUSTER_DIR/pids" ]; then
  echo "owner process $owner is gone: stopping the cluster"
  FTSCALE_CLUSTER_WATCHDOG=1 "$here/down.sh"
fi
