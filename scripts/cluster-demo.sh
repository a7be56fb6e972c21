#!/usr/bin/env bash
# `make cluster-demo` — the cluster path without a cluster (docs/cluster-install.md, "The
# cluster path without a cluster"): a study goes through everything a real cluster would do
# with it, on this machine, with no container engine and no GPU.
#
# 1. starts a local control plane (tests/cluster/up.sh: etcd, kube-apiserver,
#    controller-manager, scheduler, KWOK fake nodes) in its own state folder;
# 2. installs the Helm chart (helm/ftscale: CRD, RBAC, ServiceAccounts) with the project's helm,
#    in namespaced mode: the operator may act in the study namespace only;
# 3. runs the operator as a local process, with the environment the chart gives its pod and
#    the credentials of the chart's ServiceAccount (a TokenRequest token, the way a pod's
#    projected token works) — so it has the chart's permissions and nothing more. The chart's
#    own operator Deployment is scaled to 0: KWOK would only pretend to run it;
# 4. runs the process kubelet (tests/cluster/process_kubelet.py): every run pod's real
#    trainer and the fit pod's real fit Job become local processes, two at a time;
# 5. applies a study (a smaller cousin of examples/demo-study.yaml; CLUSTER_DEMO_STUDY=FILE
#    applies another), shows its progress, and prints status.fit and the metrics URL.
#
# Env: CLUSTER_DEMO_STUDY (a study manifest), CLUSTER_DEMO_TIMEOUT (seconds, default 900),
# CLUSTER_DEMO_KEEP=1 (leave everything running at the end and say how to stop it),
# CLUSTER_DEMO_PARALLEL (processes at once, default 2). Logs: $FTSCALE_CACHE/cluster/demo/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export FTSCALE_CACHE="${FTSCALE_CACHE:-$HOME/.cache/ftscale}"
export PYTHONPATH="$here/operator:$here/trainer_image${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
state="$FTSCALE_CACHE/cluster/demo"
release=ftscale
release_ns=ftscale-system
study_ns=ftscale-demo
timeout_s="${CLUSTER_DEMO_TIMEOUT:-900}"
parallel="${CLUSTER_DEMO_PARALLEL:-2}"
step() { printf '\n== %s  (%ds)\n' "$*" "$(( $(date +%s) - start ))"; }

py="$(scripts/python-env.sh)"
step "1/5 the tiny world and the control-plane binaries (built once, then cached)"
mkdir -p "$FTSCALE_CACHE/cluster"
"$py" -m ftscale toy build >"$FTSCALE_CACHE/cluster/demo-toy.log" 2>&1 \
  || { tail -30 "$FTSCALE_CACHE/cluster/demo-toy.log" >&2; exit 1; }
tests/cluster/build.sh >/dev/null
bin="$(tests/cluster/build.sh --print-bin-dir)"
kubectl="$bin/kubectl"
helm="$bin/helm"

# A fresh control plane in a folder of its own (not `make cluster-up`'s): a previous demo's
# study must not be found in etcd again.
export FTSCALE_CLUSTER_DIR="$state/control-plane"
tests/cluster/down.sh >/dev/null 2>&1 || true
rm -rf "$state"
mkdir -p "$state"
pids=()
cleanup() {
  local rc=$?
  if [ "${CLUSTER_DEMO_KEEP:-0}" = "1" ] && [ "$rc" -eq 0 ]; then
    return
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  tests/cluster/down.sh >/dev/null 2>&1 || true
  [ "$rc" -eq 0 ] || echo "cluster demo failed (exit $rc); logs: $state/" >&2
}
trap cleanup EXIT

step "2/5 the control plane"
admin="$(tests/cluster/up.sh 2>"$state/up.log" | tail -n1)"
kc() { "$kubectl" --kubeconfig "$admin" "$@"; }
kc get nodes --no-headers | awk '{print "   node " $1 " " $2}'

step "3/5 the chart (helm/ftscale): CRD, RBAC for namespace $study_ns, ServiceAccounts"
kc create namespace "$study_ns" >/dev/null
export HELM_CACHE_HOME="$state/helm/cache" HELM_CONFIG_HOME="$state/helm/config" HELM_DATA_HOME="$state/helm/data"
"$helm" --kubeconfig "$admin" install "$release" helm/ftscale --namespace "$release_ns" \
  --create-namespace --set "operator.watchNamespaces={$study_ns}" --set trainer.image.tag=demo \
  | sed -n 's/^\(NAME\|STATUS\|REVISION\):/   &/p'
# KWOK runs no containers: its "Running" operator pod would do nothing. The operator runs
# below as a process instead, under the same ServiceAccount and environment.
kc -n "$release_ns" scale deployment "$release-operator" --replicas=0 >/dev/null

step "4/5 the operator (as ServiceAccount $release_ns/$release-operator) and the process kubelet"
token="$(kc -n "$release_ns" create token "$release-operator" --duration 2h)"
server="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
cat >"$state/operator.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: demo, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: operator, context: {cluster: demo, user: operator, namespace: $release_ns}}]
current-context: operator
YAML
chmod 600 "$state/operator.kubeconfig"
# The operator container's environment as the chart renders it (fieldRefs filled in).
kc -n "$release_ns" get deployment "$release-operator" -o json >"$state/deployment.json"
"$py" - "$state/deployment.json" "$release_ns" "$release-operator-demo" >"$state/operator.env" <<'PY'
import json, shlex, sys
deployment, namespace, pod = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
fields = {"metadata.namespace": namespace, "metadata.name": pod}
for var in deployment["spec"]["template"]["spec"]["containers"][0].get("env", []):
    value = var.get("value", "")  # the API leaves an empty value out
    if "valueFrom" in var:
        value = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    print(f"export {var['name']}={shlex.quote(value)}")
PY
metrics_port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
health_port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
(
  # shellcheck disable=SC1091
  source "$state/operator.env"
  export FTSCALE_METRICS_PORT="$metrics_port" FTSCALE_HEALTH_PORT="$health_port" \
         FTSCALE_METRICS_BIND_ADDRESS=127.0.0.1 FTSCALE_HEALTH_BIND_ADDRESS=127.0.0.1 \
         FTSCALE_LOG_FORMAT=plain HOSTNAME="$release-operator-demo"
  exec "$py" -m ftscale operator --kubeconfig "$state/operator.kubeconfig"
) >"$state/operator.log" 2>&1 &
pids+=($!)
"$py" tests/cluster/process_kubelet.py --kubeconfig "$admin" --namespace "$study_ns" \
  --parallel "$parallel" --hold-value process --workdir "$state/kubelet" >"$state/kubelet.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
  curl -fs "http://127.0.0.1:$health_port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { tail -30 "$state/operator.log" >&2; exit 1; }
  sleep 0.5
done
echo "   operator: pid ${pids[0]}, log $state/operator.log"
echo "   process kubelet: pid ${pids[1]}, $parallel at a time, log $state/kubelet.log"

step "5/5 the study"
manifest="$state/study.yaml"
if [ -n "${CLUSTER_DEMO_STUDY:-}" ]; then
  cp "$CLUSTER_DEMO_STUDY" "$manifest"
else
  # examples/demo-study.yaml, made smaller so that it fits a few minutes of two cores: the
  # same three models and task, FMT and LoRA at four data sizes, one epoch each.
  cat >"$manifest" <<'YAML'
apiVersion: ftscale.io/v1alpha1
kind: ScalingStudy
metadata:
  name: demo
spec:
  task: {name: toy-en-de}
  models:
    - {name: tiny-1, source: "toy:tiny-1"}
    - {name: tiny-2, source: "toy:tiny-2"}
    - {name: tiny-3, source: "toy:tiny-3"}
  methods:
    - name: fmt
    - {name: lora, sizes: [4]}
  dataSizes: [25, 50, 100, 200]
  seeds: [0]
  training: {maxEpochs: 1, batchSize: 8}
  evaluation: {devExamples: 32, testExamples: 64}
  law:
    heldOut: {x: none, d: largest}
    bootstrap: 50
  execution:
    maxParallelRuns: 2
YAML
fi
# The pods of the study are the process kubelet's: the hold label keeps KWOK from completing
# them (tests/cluster/kwok/stages.yaml) and tells the process kubelet to run them.
"$py" - "$manifest" <<'PY'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
doc["metadata"].pop("namespace", None)
execution = doc["spec"].setdefault("execution", {})
execution.setdefault("labels", {})["ftscale.test/hold"] = "process"
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
PY
study="$("$py" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["metadata"]["name"])' "$manifest")"
kc -n "$study_ns" apply -f "$manifest" | sed 's/^/   /'
echo "   watch it yourself: $kubectl --kubeconfig $admin -n $study_ns get sst -w"

"$py" - "$admin" "$study_ns" "$study" "$timeout_s" "$start" <<'PY'
"""Progress, as `kubectl get sst -w` shows it, with a bar; exit 1 when the study ends
without a fit or the timeout passes."""
import sys, time
from kubernetes import client, config

kubeconfig, namespace, name, timeout, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
tty = sys.stdout.isatty()
print(f"   {'ELAPSED':>8}  {'PROGRESS':<32} {'DONE':>7} {'RUNNING':>7} {'FAILED':>6}  PHASE")
last, deadline = None, time.monotonic() + timeout
while True:
    status = api.get_namespaced_custom_object("ftscale.io", "v1alpha1", namespace, "scalingstudies", name).get("status") or {}
    done, _, total = (status.get("progress") or "0/0").partition("/")
    done, total = int(done or 0), int(total or 0)
    width = 30
    filled = int(width * done / total) if total else 0
    bar = "[" + "#" * filled + "." * (width - filled) + "]"
    phase = status.get("phase") or "Pending"
    row = (bar, f"{done}/{total}", status.get("runsRunning", 0), status.get("runsFailed", 0), phase)
    # On a terminal the line is redrawn in place; in a log, a line per finished run or phase.
    key = row if tty else (row[1], row[3], row[4])
    if key != last:
        elapsed = int(time.time()) - start
        line = f"   {elapsed // 60:>5}m{elapsed % 60:02d}s  {bar:<32} {row[1]:>7} {row[2]:>7} {row[3]:>6}  {phase}"
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        last = key
    if phase == "Fitted":
        break
    if phase in ("Failed",) or (status.get("fit") or {}).get("phase") == "Failed":
        print(f"\nthe study ended without a fit: {status.get('fit') or status.get('conditions')}")
        sys.exit(1)
    if time.monotonic() > deadline:
        print(f"\nno fit after {timeout:.0f} s (CLUSTER_DEMO_TIMEOUT)")
        sys.exit(1)
    time.sleep(1)
if tty:
    print()
PY

echo
echo "status.fit of $study_ns/$study (ftscale.api.fit_summary; docs/operator.md):"
kc -n "$study_ns" get sst "$study" -o json >"$state/study.json"
"$py" - "$state/study.json" <<'PY'
import json, sys
from ftscale.api.fit_summary import FitSummary

fit = json.load(open(sys.argv[1]))["status"]["fit"]
summary = FitSummary.parse(fit)
g = lambda v: "-" if v is None else f"{v:.4g}"
print(f"   fit Job {fit.get('job')}: {fit.get('phase')}; better form: {summary.better_form}")
columns = ("method", "factor", "form", "A", "E", "alpha", "beta", "deltaFit", "deltaHeldOut", "flags")
rows = [columns] + [
    (law.method, law.factor, law.form, *(g(law.params.get(k)) for k in ("A", "E", "alpha", "beta")),
     g(law.delta_fit), g(law.delta_heldout), " ".join(law.flags) or "-") for law in summary.laws]
widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
for r in rows:
    print("   " + "  ".join(c.ljust(w) if i in (0, 1, 2, 9) else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip())
for c in summary.critical:
    sizes = ", ".join(f"{d:.4g}" for d in c.data_sizes) or "none in range"
    print(f"   critical data size, {c.methods[0]} vs {c.methods[1]} at {c.factor} {c.x:.4g}: {sizes}")
for s in summary.skipped:
    print(f"   skipped {s.method}/{s.factor}: {s.reason}")
PY
echo
echo "operator metrics: http://127.0.0.1:$metrics_port/metrics"
curl -fs "http://127.0.0.1:$metrics_port/metrics" | grep '^ftscale_fit_parameter{' | grep 'form="multiplicative"' | sed 's/^/   /' | head -8
elapsed=$(( $(date +%s) - start ))
echo
echo "cluster demo: $study Fitted; ${elapsed} s in all."
if [ "${CLUSTER_DEMO_KEEP:-0}" = "1" ]; then
  echo "still running (CLUSTER_DEMO_KEEP=1): operator pid ${pids[0]}, process kubelet pid ${pids[1]}, control plane in $FTSCALE_CLUSTER_DIR"
  echo "   kubectl: $kubectl --kubeconfig $admin -n $study_ns get sst,jobs,pods"
  echo "   stop:    kill ${pids[*]}; FTSCALE_CLUSTER_DIR=$FTSCALE_CLUSTER_DIR tests/cluster/down.sh"
fi
