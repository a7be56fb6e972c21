#!/usr/bin/env bash
# Start a real Kubernetes control plane on 127.0.0.1 (what `make cluster-up` runs):
#   etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler + KWOK, then fake nodes.
# Certificates and service-account keys are generated here; authorization is RBAC (+ Node).
# Progress goes to stderr; the LAST line on stdout is the admin kubeconfig's path:
#   export KUBECONFIG="$(tests/cluster/up.sh | tail -n1)"
#
# Idempotent: when this state folder already holds a healthy cluster it only prints the path.
# When a component does not come up, it prints that component's log, stops what it started,
# and exits non-zero.
#
# Env:
#   FTSCALE_CLUSTER_DIR        state folder (pki, kubeconfigs, etcd data, logs, pids);
#                              default $FTSCALE_CACHE/cluster/run (FTSCALE_CACHE: ~/.cache/ftscale)
#   FTSCALE_CLUSTER_GPU_NODES  fake GPU nodes, nvidia.com/gpu: 8 each (default 4)
#   FTSCALE_CLUSTER_CPU_NODES  fake CPU-only nodes (default 2)
#   FTSCALE_CLUSTER_OWNER_PID  when set, a watchdog runs down.sh as soon as that process exits
#                              (the pytest fixture sets it, so a killed test run leaves nothing)
#   FTSCALE_CLUSTER_TIMEOUT    seconds to wait for each component (default 90)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
# shellcheck source=lib.sh
source "$here/lib.sh"

"$here/build.sh" >&2
bin="$("$here/build.sh" --print-bin-dir)"
timeout_s="${FTSCALE_CLUSTER_TIMEOUT:-90}"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
mkdir -p "$dir"
exec 8>"$dir/up.lock"
flock 8

kubeconfig="$dir/kubeconfig"
kc() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# ---- already up? -------------------------------------------------------------------------
healthy=1
for c in "${components[@]}"; do is_running "$c" || healthy=0; done
if [ "$healthy" = 1 ] && kc get --raw=/readyz >/dev/null 2>&1; then
  log "cluster already up (state in $dir)"
  echo "$kubeconfig"
  exit 0
fi
if compgen -G "$dir/pids/*.pid" >/dev/null; then
  log "a partial or stale cluster was found in $dir: stopping it first"
  "$here/down.sh" >&2
fi

# ---- fresh state -------------------------------------------------------------------------
rm -rf "$dir/etcd-data" "$dir/logs" "$dir/pids"
mkdir -p "$dir/logs" "$dir/pids" "$dir/pki"
# Started first, so that even an up.sh killed half-way leaves nothing running once the owner ends.
if [ -n "${FTSCALE_CLUSTER_OWNER_PID:-}" ]; then
  setsid "$here/watchdog.sh" "$FTSCALE_CLUSTER_OWNER_PID" </dev/null >"$dir/logs/watchdog.log" 2>&1 3>&- 8>&- &
  record_pid watchdog "$!"
fi
# Whatever ends this script before the cluster is up (an error, Ctrl-C, SIGTERM) stops what it
# started: a half-started control plane is never left running.
finished=0
# fd 3 keeps the real stderr: a trap may run while a `>/dev/null 2>&1` redirection is active.
exec 3>&2
trap 'if [ "$finished" != 1 ]; then log "up.sh did not finish: stopping what it started" 2>&3; "$here/down.sh" 2>&3 >&3 || true; fi' EXIT
trap 'exit 130' INT TERM
attempt="${FTSCALE_CLUSTER_ATTEMPT:-1}"
fail() {  # component reason
  if grep -q "address already in use" "$dir/logs/$1.log" 2>/dev/null && [ "$attempt" -lt 3 ]; then
    # Another process took the free port we picked before our component bound it: retry.
    log "$1 lost its port to another process; retrying with fresh ports (attempt $((attempt + 1)))"
    "$here/down.sh" >&2 || true
    exec 8>&-  # release up.lock for the new attempt
    FTSCALE_CLUSTER_ATTEMPT=$((attempt + 1)) exec "$0"
  fi
  log "FAILED: $1 $2"
  log "---- last 60 lines of $dir/logs/$1.log ----"
  tail -n 60 "$dir/logs/$1.log" >&2 2>/dev/null || true
  log "---- stopping what was started ----"
  "$here/down.sh" >&2 || true
  finished=1
  exit 1
}

start() {  # component args...  (own session, so a Ctrl-C aimed at the caller does not kill it)
  local name="$1"; shift
  # 8>&-: the component must not inherit up.lock, or the lock would live as long as it does.
  setsid "$bin/$name" "$@" </dev/null >"$dir/logs/$name.log" 2>&1 3>&- 8>&- &
  record_pid "$name" "$!"
}

wait_until() {  # component description command...
  local name="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    is_running "$name" || fail "$name" "exited while waiting for: $what"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name" "not ready after ${timeout_s}s: $what"
    sleep 0.3
  done
}

# ---- ports (fresh per start: several clusters may run side by side) ----------------------
read -r etcd_port peer_port api_port kcm_port sched_port kwok_port < <(free_ports 6)
cat >"$dir/ports.env" <<EOF
ETCD_PORT=$etcd_port
APISERVER_PORT=$api_port
CONTROLLER_MANAGER_PORT=$kcm_port
SCHEDULER_PORT=$sched_port
KWOK_PORT=$kwok_port
EOF

# ---- certificates, keys, kubeconfigs -----------------------------------------------------
"$here/pki.sh" "$dir/pki" >&2
server="https://127.0.0.1:$api_port"
for user in admin kube-controller-manager kube-scheduler kwok; do
  write_kubeconfig "$dir/pki" "$user" "$server" >"$dir/$user.kubeconfig"
done
mv "$dir/admin.kubeconfig" "$kubeconfig"

# ---- etcd --------------------------------------------------------------------------------
log "starting etcd $ETCD_VERSION on 127.0.0.1:$etcd_port"
start etcd --name=default --data-dir="$dir/etcd-data" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-cluster="default=http://127.0.0.1:$peer_port" \
  --unsafe-no-fsync=true --log-level=warn
# --unsafe-no-fsync: a throw-away test store; fsync on every write would dominate test time.
wait_until etcd "GET /health" curl -sf "http://127.0.0.1:$etcd_port/health"

# ---- kube-apiserver ----------------------------------------------------------------------
pki="$dir/pki"
log "starting kube-apiserver $KUBERNETES_VERSION on $server"
start kube-apiserver --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --authorization-mode=Node,RBAC --service-cluster-ip-range=10.96.0.0/16 \
  --allow-privileged=true --cert-dir="$pki/apiserver-generated" --profiling=false --v=1
wait_until kube-apiserver "GET /readyz" kc get --raw=/readyz

# ---- controller-manager, scheduler, KWOK (in parallel) ------------------------------------
# FTSCALE_CLUSTER_CLIENT_QPS raises the controller-manager's and scheduler's API client rate
# (default 20/50 QPS), as large clusters do: `make bench-operator --runs 10000` is otherwise
# bounded by the Job controller creating pods 20 a second, not by the operator.
qps=()
if [ -n "${FTSCALE_CLUSTER_CLIENT_QPS:-}" ]; then
  qps=(--kube-api-qps="$FTSCALE_CLUSTER_CLIENT_QPS" --kube-api-burst="$((2 * FTSCALE_CLUSTER_CLIENT_QPS))")
fi
log "starting kube-controller-manager, kube-scheduler and kwok $KWOK_VERSION"
start kube-controller-manager --kubeconfig="$dir/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$dir/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$kcm_port" --cert-dir="$pki/kcm-generated" \
  --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --profiling=false --v=1 "${qps[@]}"
start kube-scheduler --kubeconfig="$dir/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$dir/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$dir/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$sched_port" --cert-dir="$pki/scheduler-generated" \
  --leader-elect=false --profiling=false --v=1 "${qps[@]}"
start kwok --kubeconfig="$dir/kwok.kubeconfig" --config="$here/kwok/stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr=10.244.0.0/16 --node-ip=10.245.0.1 --server-address="127.0.0.1:$kwok_port" \
  --node-lease-duration-seconds=40
wait_until kube-controller-manager "GET /healthz" curl -skf "https://127.0.0.1:$kcm_port/healthz"
wait_until kube-scheduler "GET /healthz" curl -skf "https://127.0.0.1:$sched_port/healthz"
wait_until kwok "GET /healthz" curl -sf "http://127.0.0.1:$kwok_port/healthz"

# ---- fake nodes, ready for work ----------------------------------------------------------
log "creating ${FTSCALE_CLUSTER_GPU_NODES:-4} GPU and ${FTSCALE_CLUSTER_CPU_NODES:-2} CPU nodes (KWOK)"
"$here/kwok/nodes.sh" "$KUBERNETES_VERSION" | kc create -f - >&2
nodes_ready() { [ -z "$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -v '^True$')" ]; }
wait_until kwok "every node Ready" nodes_ready
# The service-account controller must have made `default` before any pod can be admitted.
wait_until kube-controller-manager "ServiceAccount default/default" kc -n default get serviceaccount default

log "cluster up: $("$bin/kubectl" version --kubeconfig "$kubeconfig" 2>/dev/null | tr '\n' ' ')"
log "stop it with: tests/cluster/down.sh   (state: $dir)"
finished=1
echo "$kubeconfig"
