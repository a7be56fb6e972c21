#!/usr/bin/env bash
# Stop every process up.sh started for this state folder (`make cluster-down`), and nothing
# else: each PID is checked against the start time recorded when it was launched.
# Clients first, then kube-apiserver, then etcd, so no component logs a lost connection.
# Env: FTSCALE_CLUSTER_DIR (same default as up.sh). Logs and certificates are kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

stop() {  # component... : SIGTERM together, wait up to 15 s, then SIGKILL what is left
  local c pid pids=() names=()
  for c in "$@"; do
    if pid="$(pid_of "$c")"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); names+=("$c"); fi
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  local deadline=$((SECONDS + 15))
  for i in "${!pids[@]}"; do
    while is_running "${names[$i]}" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if pid="$(pid_of "${names[$i]}")"; then
      log "${names[$i]} (pid $pid) ignored SIGTERM for 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped ${names[$i]}"
  done
}

if [ ! -d "$dir/pids" ]; then log "nothing to stop in $dir"; exit 0; fi
exec 7>"$dir/down.lock"
flock 7
# The watchdog's own down.sh call must not stop the watchdog that runs it.
[ -n "${FTSCALE_CLUSTER_WATCHDOG:-}" ] || stop watchdog
stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd
rm -rf "$dir/pids"
log "cluster in $dir is down"
